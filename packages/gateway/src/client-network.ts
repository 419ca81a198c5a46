import { isIPv6 } from "node:net";

/**
 * The network a caller's address stands for, as the gateway counts callers
 * (the failed-authentication budget, the anonymous rate limit): an IPv4
 * address as it is, an IPv6 address as its /64 prefix, `2001:db8:0:1::/64`.
 *
 * One IPv6 host is normally given a whole /64 (RFC 4291's interface
 * identifiers, SLAAC and privacy addresses change the last 64 bits at
 * will), so counting single IPv6 addresses would give one client 2⁶⁴ fresh
 * budgets. An IPv4-mapped address (`::ffff:192.0.2.1`, what a dual-stack
 * socket reports for an IPv4 caller) counts as its IPv4 address.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc6177 | RFC 6177} (IPv6 end sites are assigned a /64 or shorter)
 */
export function clientNetworkOf(ip: string | undefined): string {
  if (ip === undefined || ip === "") return "unknown";
  if (!ip.includes(":")) return ip;
  const address = (ip.split("%", 1)[0] as string).toLowerCase(); // no zone id (fe80::1%eth0)
  if (!isIPv6(address)) return address;
  const groups = hextets(address);
  if (groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff) {
    const [a, b] = [groups[6] as number, groups[7] as number];
    return `${a >> 8}.${a & 0xff}.${b >> 8}.${b & 0xff}`;
  }
  return `${groups.slice(0, 4).map((g) => g.toString(16)).join(":")}::/64`;
}

// The eight 16-bit groups of a valid IPv6 address in text form (`::`
// expanded, a trailing dotted IPv4 part read as two groups).
function hextets(address: string): number[] {
  const groupsOf = (part: string): number[] => {
    if (part === "") return [];
    const out: number[] = [];
    for (const piece of part.split(":")) {
      if (piece.includes(".")) {
        const [a, b, c, d] = piece.split(".").map(Number) as [number, number, number, number];
        out.push((a << 8) | b, (c << 8) | d);
      } else out.push(parseInt(piece, 16));
    }
    return out;
  };
  const gap = address.indexOf("::");
  if (gap < 0) return groupsOf(address);
  const head = groupsOf(address.slice(0, gap));
  const tail = groupsOf(address.slice(gap + 2));
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}
