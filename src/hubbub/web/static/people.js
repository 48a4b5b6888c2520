// The people panel: who is online in the open room, its members, and the moderation controls.

import { $, el } from "./view.js";

const same = (a, b) => a.toLowerCase() === b.toLowerCase();

/**
 * Draw the panel for `room` as seen by `me`. Controls appear only where the server would
 * allow them: the owner and moderators kick, ban and add members; only the owner promotes;
 * nobody acts on the owner, and moderators do not act on each other.
 */
export function renderPeople(room, me, actions) {
  const online = room ? [...room.presence].sort((a, b) => a.localeCompare(b)) : [];
  $("presence-list").replaceChildren(
    ...online.map((user) =>
      el(
        "li",
        { testid: `presence-${user}`, className: "online" },
        el("span", { className: "dot", "aria-hidden": "true" }),
        user,
      ),
    ),
  );
  const myRole = room ? room.role(me) : null;
  const staff = myRole === "owner" || myRole === "moderator";
  const members = room && room.info ? [...room.info.members] : [];
  members.sort((a, b) => a.localeCompare(b));
  $("member-list").replaceChildren(
    ...members.map((user) => memberItem(room, me, myRole, user, actions)),
  );
  $("invite-form").hidden = !staff;
}

function memberItem(room, me, myRole, user, actions) {
  const role = room.role(user);
  const item = el(
    "li",
    { testid: `member-${user}` },
    el("span", { className: "name", text: user }),
    role === "owner" || role === "moderator" ? el("span", { className: "role", text: role }) : null,
  );
  if (same(user, me) || role === "owner") return item;
  const outranks = myRole === "owner" || (myRole === "moderator" && role === "member");
  if (!outranks) return item;
  const entries = [
    ["kick", "Kick", actions.kick],
    ["ban", "Ban", actions.ban],
  ];
  if (myRole === "owner") {
    entries.push(
      role === "moderator"
        ? ["demote", "Demote", actions.demote]
        : ["promote", "Promote", actions.promote],
    );
  }
  item.append(actionMenu(`member-menu-${user}`, `Actions for ${user}`, entries, user));
  return item;
}

/**
 * A "⋯" button and the menu it opens (a popover: Escape and a click elsewhere close it).
 * `entries` are [testid prefix, label, action]; each action is called with `arg`.
 */
export function actionMenu(testid, label, entries, arg) {
  const id = `menu-${testid}`;
  const menu = el("div", { id, className: "menu", role: "menu", testid, popover: "auto" });
  menu.append(
    ...entries.map(([name, text, action]) =>
      el("button", {
        type: "button",
        role: "menuitem",
        testid: arg === undefined ? name : `${name}-${arg}`,
        text,
        onclick: () => {
          menu.hidePopover();
          action(arg);
        },
      }),
    ),
  );
  const opener = el("button", {
    type: "button",
    className: "small secondary menu-button",
    testid: `${testid}-open`,
    text: "⋯",
    "aria-label": label,
    "aria-haspopup": "menu",
    popovertarget: id,
  });
  menu.addEventListener("beforetoggle", (event) => {
    if (event.newState !== "open") return;
    // Under its button, right-aligned, inside the window.
    const at = opener.getBoundingClientRect();
    menu.style.top = `${at.bottom + 4}px`;
    menu.style.left = `${Math.max(8, Math.min(at.right - 176, window.innerWidth - 184))}px`;
  });
  menu.addEventListener("toggle", (event) => {
    if (event.newState === "open") menu.querySelector("button")?.focus();
  });
  menu.addEventListener("keydown", (event) => {
    const items = [...menu.querySelectorAll("button")];
    const at = items.indexOf(document.activeElement);
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      items[(at + step + items.length) % items.length].focus();
    }
  });
  return el("span", { className: "actions" }, opener, menu);
}
