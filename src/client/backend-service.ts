import { ConfigurationError } from "../core/errors.js";

/**
 * Checks that `name` can be the `<service>` segment of
 * `/backend/<service>/…` and returns it unchanged. A service name is a single
 * path segment: empty, `.`, `..`, or anything with `/`, `\`, `%`, `?`, `#`,
 * whitespace or a control character is refused with a {@link ConfigurationError}
 * naming `option` — before any I/O, so a bad name never reaches the network.
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

// Control characters are shown escaped so the message itself stays one clean line.
function printable(s: string): string {
  return JSON.stringify(s).slice(1, -1);
}
