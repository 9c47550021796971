/**
 * Polls `fn` until `ok` holds (the server's work is asynchronous: jobs, reboots, safety readings).
 * Fails with what was last seen, so a timeout says where the flow stopped.
 */
export async function waitFor<T>(
  fn: () => Promise<T> | T,
  ok: (v: T) => boolean,
  what: string,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T = await fn();
  while (!ok(last)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 20));
    last = await fn();
  }
  return last;
}
