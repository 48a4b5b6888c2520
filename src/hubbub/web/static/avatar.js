// Initials avatars: a round badge with a stable colour per name, for sighted readers only
// (the name itself is always written next to it).

const COLOURS = 8; // .avatar.c0 ... .avatar.c7 in app.css, each with white text at 5:1 or more

/** "A" for "alice", "AL" for "ann-lee", "ann_lee" or "ann.lee". */
export function initials(name) {
  const parts = name.split(/[-_.\s]+/).filter(Boolean);
  const letters = parts.length > 1 ? parts[0][0] + parts[1][0] : (parts[0] || "?")[0];
  return letters.toUpperCase();
}

/** The palette slot of a name: FNV-1a over its UTF-16 code units. */
export function colourIndex(name) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < name.length; i += 1) {
    hash ^= name.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % COLOURS;
}

/** The badge for `name`, hidden from assistive technology. */
export function avatar(name) {
  const badge = document.createElement("span");
  badge.className = `avatar c${colourIndex(name)}`;
  badge.dataset.testid = "avatar";
  badge.setAttribute("aria-hidden", "true");
  badge.textContent = initials(name);
  return badge;
}
