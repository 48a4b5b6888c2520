// What the app knows of one room: its messages (by seq, no duplicates), presence and typing.

const TYPING_SHOWN_MS = 4000;

export class Room {
  constructor(name) {
    this.name = name;
    this.info = null; // GET /rooms/{room}: owner, moderators, members, private, topic
    this.messages = []; // ascending seq, each seq once
    this.seqs = new Set();
    this.lastSeq = 0; // the newest seq the server told us of (joined or a message)
    this.loaded = false; // a history page below our oldest message has been read
    this.more = true; // older messages exist beyond what we hold
    this.loadingOlder = false;
    this.joined = false; // this connection is subscribed (joined since the last welcome)
    this.joinedSeq = 0; // the room's last seq when it was joined: live messages come after it
    this.filling = false;
    this.presence = new Set();
    this.typing = new Map(); // user -> time their indicator expires
  }

  get oldestSeq() {
    return this.messages.length ? this.messages[0].seq : null;
  }

  get newestSeq() {
    return this.messages.length ? this.messages[this.messages.length - 1].seq : null;
  }

  /** Add a message unless its seq is known; true when it was new. */
  add(message) {
    if (this.seqs.has(message.seq)) return false;
    this.seqs.add(message.seq);
    this.lastSeq = Math.max(this.lastSeq, message.seq);
    const list = this.messages;
    if (!list.length || list[list.length - 1].seq < message.seq) {
      list.push(message);
    } else {
      let at = list.findIndex((m) => m.seq > message.seq);
      if (at < 0) at = list.length;
      list.splice(at, 0, message);
    }
    this.typing.delete(message.from);
    return true;
  }

  /**
   * The seq after which we lack messages we should hold, or null. History and the join
   * race (a page read just before a message, the join just after it), so what we hold can
   * have a hole: between two messages, below the first one when history says it is the
   * start, or between the newest one and the seq the join started from.
   */
  firstGap() {
    const list = this.messages;
    if (this.loaded && !this.more && list.length && list[0].seq > 1) return 0;
    for (let i = 1; i < list.length; i++) {
      if (list[i].seq !== list[i - 1].seq + 1) return list[i - 1].seq;
    }
    const newest = this.newestSeq === null ? 0 : this.newestSeq;
    if (this.loaded && this.joined && newest < this.joinedSeq) return newest;
    return null;
  }

  /** Forget the messages (a resume that could not replay everything: page history again). */
  reset() {
    this.messages = [];
    this.seqs.clear();
    this.loaded = false;
    this.more = true;
  }

  typingNow(user) {
    this.typing.set(user, Date.now() + TYPING_SHOWN_MS);
  }

  /** The users whose typing indicator is still on, dropping the expired ones. */
  typists() {
    const now = Date.now();
    for (const [user, until] of this.typing) if (until <= now) this.typing.delete(user);
    return [...this.typing.keys()].sort();
  }

  role(user) {
    if (!this.info) return null;
    const key = user.toLowerCase();
    if (this.info.owner.toLowerCase() === key) return "owner";
    if ((this.info.moderators || []).some((m) => m.toLowerCase() === key)) return "moderator";
    if (this.info.members.some((m) => m.toLowerCase() === key)) return "member";
    return null;
  }
}
