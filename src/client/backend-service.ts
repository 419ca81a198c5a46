import { ConfigurationError } from "../core/errors.js";

/**
 * Checks that `name` can be the `<service>` segment of
 * `/backend/<service>/…` and returns it unchanged. A service name is a single
 * path segment sent as it is, never percent-encoded: letters, digits and
 * RFC 3986's other segment characters (`- . _ ~ ! $ & ' ( ) * + , ; = : @`).
 * Anything else — empty, `.`, `..`, `/`, `\`, `%`, `?`, `#`, whitespace,
 * a control or non-ASCII character — is refused with a {@link ConfigurationError}
 * naming `option`, before any I/O, so a bad name never reaches the network
 * and the Connect transport and the REST client always send the same path.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc3986#section-3.3 | RFC 3986 §3.3} (path segments)
 */
export function checkServiceName(name: unknown, option = "service"): string {
  if (typeof name !== "string" || name === "") {
    throw new ConfigurationError(option, "must be a non-empty string naming a backend service, e.g. \"base-valeur\".");
  }
  if (name === "." || name === "..") {
    throw new ConfigurationError(option, `must be a backend service name, not the path segment "${name}".`);
  }
  // eslint-disable-next-line no-control-regex
  if (/[/\\%?#\s\u0000-\u001f\u007f]/.test(name)) {
    throw new ConfigurationError(
      option,
      `must be a single path segment: "${printable(name)}" contains "/", "\\", "%", "?", "#", whitespace ` +
        "or a control character.",
    );
  }
  if (!SEGMENT.test(name)) {
    throw new ConfigurationError(
      option,
      `must be a path segment of letters, digits and - . _ ~ ! $ & ' ( ) * + , ; = : @ only: "${printable(name)}" has another character ` +
        "(non-ASCII included; a gateway names its backends in ASCII).",
    );
  }
  return name;
}

/**
 * The Ruby client's convention for service names given as symbols, applied only when asked:
 * `kebabService("base_valeur")` → `"base-valeur"`. Strings passed anywhere
 * else are used exactly as given.
 */
export function kebabService(snakeCase: string): string {
  return checkServiceName(snakeCase.replace(/_/g, "-"));
}

// RFC 3986 pchar, without percent-encoding.
const SEGMENT = /^[A-Za-z0-9\-._~!$&'()*+,;=:@]+$/;

// Control characters are shown escaped so the message itself stays one clean line.
function printable(s: string): string {
  return JSON.stringify(s).slice(1, -1);
}
