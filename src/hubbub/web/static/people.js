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
  const button = (name, label, action) =>
    el("button", {
      type: "button",
      className: "small secondary",
      testid: `${name}-${user}`,
      text: label,
      "aria-label": `${label} ${user}`,
      onclick: () => action(user),
    });
  const controls = el("span", { className: "actions" });
  controls.append(button("kick", "Kick", actions.kick), button("ban", "Ban", actions.ban));
  if (myRole === "owner") {
    controls.append(
      role === "moderator"
        ? button("demote", "Demote", actions.demote)
        : button("promote", "Promote", actions.promote),
    );
  }
  item.append(controls);
  return item;
}
