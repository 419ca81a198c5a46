import pino from "pino";
const ML = 4096;
const boom = pino.destination({ dest: 1, minLength: process.env.WRAP ? 0 : ML });
class Gathered { lines = []; size = 0; write(s) { this.lines.push(s); this.size += s.length; if (this.size >= ML) this.flush(); } flush() { if (this.lines.length === 0) return; boom.write(this.lines.length === 1 ? this.lines[0] : this.lines.join("")); this.lines = []; this.size = 0; } }
const dest = process.env.WRAP ? new Gathered() : boom;
const log = pino({ level: "info" }, dest);
const fields = { reqId: "req-abcdefgh-1234", method: "GET", route: "/backend/echo/*", path: "/backend/echo/x", remoteAddress: "127.0.0.1", statusCode: 200, durationMs: 0.532 };
const N = 200000;
const c0 = process.cpuUsage(); const t0 = performance.now();
let i = 0;
await new Promise((resolve) => {
  function burst() { for (let k = 0; k < 64 && i < N; k++, i++) log.info(fields, "request completed"); if (i < N) setImmediate(burst); else resolve(); }
  burst();
});
dest.flush?.(); boom.flushSync();
const c = process.cpuUsage(c0);
console.error(process.env.WRAP ? "wrap" : "plain", `µs/line cpu`, ((c.user + c.system) / N).toFixed(2), "user", (c.user/N).toFixed(2), "sys", (c.system/N).toFixed(2));
