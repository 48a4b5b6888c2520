// The HTTP API under /api/v1: JSON in and out, errors as ApiError with the server's code.

/** An error answer of the server (or a network failure, code "network"). */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Call the API; resolves to the parsed body (null for 204), rejects with ApiError. */
export async function call(method, path, { token, body } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(`/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "network", "cannot reach the server");
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = data && data.error ? data.error : {};
    throw new ApiError(
      response.status,
      error.code || "http",
      error.message || `the server answered ${response.status}`,
    );
  }
  return data;
}

/** The path of one room (names are [a-z0-9_-], but encode anyway: they come from users). */
export function roomPath(room, ...rest) {
  return `/rooms/${[room, ...rest].map(encodeURIComponent).join("/")}`;
}
