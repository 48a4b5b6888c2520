// The WebSocket to the node: hello, replies matched by `ref`, a ping that finds dead paths,
// reconnect with backoff and jitter, and nothing at all while the browser says it is offline.

const BACKOFF_FIRST_MS = 250;
const BACKOFF_MAX_MS = 10000;
const PING_DEFAULT_MS = 25000;
const PING_MIN_MS = 1000;
const UNAUTHORIZED = 4001;
const NO_PONG = 4000;
const WELCOME_WAIT_MS = 10000;

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
 * How often the app pings: the server's `welcome.heartbeat` (its own ping interval), no more
 * often than once a second and no less than every 25 s.
 */
export function pingInterval(heartbeat) {
  if (typeof heartbeat !== "number" || !(heartbeat > 0)) return PING_DEFAULT_MS;
  return Math.min(PING_DEFAULT_MS, Math.max(PING_MIN_MS, heartbeat * 1000));
}

/**
 * One logical connection that outlives its sockets. `onState` hears "connecting", "live",
 * "reconnecting" and "offline"; `onLive` runs after each welcome (rejoin rooms, resend the
 * outbox); `onFrame` gets every frame that is not a reply; `onUnauthorized` ends the session.
 */
export class Connection {
  constructor(url, token, handlers) {
    this.url = url;
    this.token = token;
    this.handlers = handlers;
    this.socket = null;
    this.live = false;
    this.stopped = false;
    this.offline = false;
    this.attempt = 0;
    this.nextRef = 1;
    this.waiting = new Map();
    this.retryTimer = null;
    this.pingTimer = null;
    this.welcomeTimer = null;
    this.pongDue = false;
    this.wentOffline = () => this.networkLost();
    this.cameOnline = () => this.networkBack();
  }

  start() {
    window.addEventListener("offline", this.wentOffline);
    window.addEventListener("online", this.cameOnline);
    if (navigator.onLine === false) {
      this.networkLost();
      return;
    }
    this.handlers.onState("connecting");
    this.open();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener("offline", this.wentOffline);
    window.removeEventListener("online", this.cameOnline);
    clearTimeout(this.retryTimer);
    clearTimeout(this.welcomeTimer);
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
    socket.onopen = () => socket.send(JSON.stringify({ type: "hello", token: this.token }));
    socket.onmessage = (event) => this.received(event.data);
    socket.onclose = (event) => this.closed(event.code);
    // A connect into a dead path can hang for minutes before the browser gives up.
    clearTimeout(this.welcomeTimer);
    this.welcomeTimer = setTimeout(() => {
      this.abandon(NO_PONG, "no welcome");
      this.closed(NO_PONG);
    }, WELCOME_WAIT_MS);
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
    clearTimeout(this.welcomeTimer);
    this.live = true;
    this.attempt = 0;
    this.pongDue = false;
    this.handlers.onState("live");
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => this.heartbeat(), pingInterval(frame.heartbeat));
    this.handlers.onLive(frame);
  }

  /**
   * Our own ping finds a dead path that no close event would report for minutes: without
   * an answer (any frame) by the next ping, the socket is given up at once.
   */
  heartbeat() {
    if (this.pongDue) {
      this.abandon(NO_PONG, "no answer to ping");
      this.closed(NO_PONG);
      return;
    }
    this.pongDue = true;
    this.post({ type: "ping" });
  }

  /** Stop using the socket now: its late events are ignored, its close is not waited for. */
  abandon(code, reason) {
    const socket = this.socket;
    if (!socket) return;
    socket.onopen = socket.onmessage = socket.onclose = null;
    this.socket = null;
    socket.close(code, reason);
  }

  /** The socket is gone: fail the requests in flight, then reconnect unless told not to. */
  closed(code) {
    this.live = false;
    this.socket = null;
    clearInterval(this.pingTimer);
    clearTimeout(this.welcomeTimer);
    clearTimeout(this.retryTimer);
    for (const waiter of this.waiting.values()) waiter.reject(new ConnectionLost());
    this.waiting.clear();
    if (this.stopped) return;
    if (code === UNAUTHORIZED) {
      this.stopped = true;
      this.handlers.onUnauthorized();
      return;
    }
    if (this.offline) return;
    this.handlers.onState("reconnecting");
    this.retryTimer = setTimeout(() => this.open(), this.backoff());
  }

  /** The browser has no network: drop the socket and wait for `online`, trying nothing. */
  networkLost() {
    if (this.stopped) return;
    this.offline = true;
    this.abandon(1000, "offline");
    this.closed(1000);
    this.handlers.onState("offline");
  }

  /** The network is back: connect now, without waiting out a backoff. */
  networkBack() {
    if (this.stopped || !this.offline) return;
    this.offline = false;
    this.attempt = 0;
    this.handlers.onState("reconnecting");
    this.open();
  }

  /** Exponential backoff with jitter, so a restarted node is not hit by every tab at once. */
  backoff() {
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
    this.attempt += 1;
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }
}
