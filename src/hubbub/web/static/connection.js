// The WebSocket to the node: hello, replies matched by `ref`, reconnect with backoff and jitter.

const BACKOFF_FIRST_MS = 250;
const BACKOFF_MAX_MS = 10000;
const PING_EVERY_MS = 25000;
const UNAUTHORIZED = 4001;

/** A request whose connection closed before its reply came: the caller may retry it. */
export class ConnectionLost extends Error {
  constructor() {
    super("the connection was lost");
    this.code = "connection_lost";
  }
}

/** An `error` frame answering one of our frames. */
export class FrameError extends Error {
  constructor(frame) {
    super(frame.message || frame.code);
    this.code = frame.code;
    this.retryAfter = frame.retry_after;
  }
}

/** The URL of /ws on the node that served the page (ws: for http:, wss: for https:). */
export function socketUrl(location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

/**
 * One logical connection that outlives its sockets. `onState` hears "connecting", "live"
 * and "reconnecting"; `onLive` runs after each welcome (rejoin rooms, resend the outbox);
 * `onFrame` gets every frame that is not a reply; `onUnauthorized` ends the session.
 */
export class Connection {
  constructor(url, token, handlers) {
    this.url = url;
    this.token = token;
    this.handlers = handlers;
    this.socket = null;
    this.live = false;
    this.stopped = false;
    this.attempt = 0;
    this.nextRef = 1;
    this.waiting = new Map();
    this.retryTimer = null;
    this.pingTimer = null;
    this.pongDue = false;
  }

  start() {
    this.handlers.onState("connecting");
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    if (this.socket) this.socket.close(1000, "bye");
  }

  /** Send a frame and resolve with its reply; rejects with FrameError or ConnectionLost. */
  request(frame) {
    if (!this.live) return Promise.reject(new ConnectionLost());
    const ref = `r${this.nextRef++}`;
    return new Promise((resolve, reject) => {
      this.waiting.set(ref, { resolve, reject });
      this.socket.send(JSON.stringify({ ...frame, ref }));
    });
  }

  /** Send a frame that has no reply (typing); dropped when not live. */
  post(frame) {
    if (this.live) this.socket.send(JSON.stringify(frame));
  }

  open() {
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.addEventListener("open", () => {
      socket.send(JSON.stringify({ type: "hello", token: this.token }));
    });
    socket.addEventListener("message", (event) => this.received(event.data));
    socket.addEventListener("close", (event) => {
      if (this.socket === socket) this.closed(event.code);
    });
  }

  received(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    this.pongDue = false;
    if (frame.type === "welcome") {
      this.welcomed(frame);
      return;
    }
    const waiter = frame.ref === undefined ? undefined : this.waiting.get(frame.ref);
    if (waiter) {
      this.waiting.delete(frame.ref);
      if (frame.type === "error") waiter.reject(new FrameError(frame));
      else waiter.resolve(frame);
      return;
    }
    if (frame.type !== "pong") this.handlers.onFrame(frame);
  }

  welcomed(frame) {
    this.live = true;
    this.attempt = 0;
    this.handlers.onState("live");
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => this.heartbeat(), PING_EVERY_MS);
    this.handlers.onLive(frame);
  }

  /** Our own ping finds a dead path that no close event would report for minutes. */
  heartbeat() {
    if (this.pongDue) {
      this.socket.close(4000, "no answer to ping");
      return;
    }
    this.pongDue = true;
    this.post({ type: "ping" });
  }

  closed(code) {
    this.live = false;
    this.socket = null;
    clearInterval(this.pingTimer);
    for (const waiter of this.waiting.values()) waiter.reject(new ConnectionLost());
    this.waiting.clear();
    if (this.stopped) return;
    if (code === UNAUTHORIZED) {
      this.stopped = true;
      this.handlers.onUnauthorized();
      return;
    }
    this.handlers.onState("reconnecting");
    this.retryTimer = setTimeout(() => this.open(), this.backoff());
  }

  /** Exponential backoff with jitter, so a restarted node is not hit by every tab at once. */
  backoff() {
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
    this.attempt += 1;
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }
}
