/** `user:password@` → `user:***@` wherever it appears in `text` (URLs, and mistyped ones). */
export function maskUrlPasswords(text: string): string {
  return text.replace(/([\w.%+-]+):[^\s@/"':]+@/g, '$1:***@');
}

/**
 * The password in a store URL, as written and percent-decoded; none when it has no `user:pass@`.
 * Read loosely, so that a mistyped URL (`postgres//u:p@h`, which the core echoes back as not
 * supported) still has its password found.
 */
export function passwordsOf(url: string | undefined): string[] {
  const at = url?.lastIndexOf('@') ?? -1;
  if (url === undefined || at < 0) return [];
  // The user info: before the last '@', after a scheme that is followed by slashes.
  const userInfo = url.slice(0, at).replace(/^[a-z][a-z0-9+.-]*:\/+/i, '');
  const colon = userInfo.indexOf(':');
  if (colon < 0 || colon === userInfo.length - 1) return [];
  const raw = userInfo.slice(colon + 1);
  let decoded = raw;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    // Not valid percent-encoding: the raw text is the password.
  }
  return [...new Set([raw, decoded])];
}

/**
 * Text fit to show: URL passwords masked, and the store URL's own password (as given, and
 * decoded) replaced wherever it appears. The core never puts the password of a URL it can read
 * in its messages; this is a second guard, for mistyped URLs and messages from anywhere.
 */
export function redact(text: string, storeUrl?: string): string {
  let out = text;
  // Very short passwords are left to the pattern: replacing them everywhere would garble words.
  for (const password of passwordsOf(storeUrl)) {
    if (password.length >= 4) out = out.split(password).join('***');
  }
  return maskUrlPasswords(out);
}
