import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { GatheredLogLines, type LogDestination } from "../../packages/gateway/src/gathered-log-lines.js";

/** A destination that records what it is handed. */
function recording() {
  const writes: string[] = [];
  const calls: string[] = [];
  const destination: LogDestination = {
    write: (text) => writes.push(text),
    flush: (callback) => {
      calls.push("flush");
      callback?.();
    },
    flushSync: () => calls.push("flushSync"),
  };
  return { destination, writes, calls };
}

const line = (i: number) => `{"level":30,"i":${i},"msg":"request completed"}\n`;

describe("GatheredLogLines", () => {
  it("hands lines over joined, in order, once a block's worth is gathered — one write per block, not per line", () => {
    const { destination, writes } = recording();
    const lines = new GatheredLogLines(destination, 1024, 60_000);
    const written: string[] = [];
    while (writes.length < 10) {
      const next = line(written.length);
      const before = writes.length;
      lines.write(next);
      written.push(next);
      if (writes.length === before) continue;
      // Handed over just as the block reached 1,024 characters: the lines since the last block, joined.
      const block = writes.at(-1) as string;
      expect(block.length).toBeGreaterThanOrEqual(1024);
      expect(block.length - next.length).toBeLessThan(1024);
    }
    expect(written.length).toBeGreaterThan(10 * 20);
    expect(writes.join("")).toBe(written.join(""));
  });

  it("hands a line over within the interval at low traffic", async () => {
    const { destination, writes } = recording();
    const lines = new GatheredLogLines(destination, 16 * 1024, 20);
    lines.write(line(1));
    expect(writes).toEqual([]);
    const deadline = Date.now() + 2_000;
    while (writes.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(writes).toEqual([line(1)]);
  });

  it("flush and flushSync hand everything over first, then flush the destination", async () => {
    const { destination, writes, calls } = recording();
    const lines = new GatheredLogLines(destination, 16 * 1024, 60_000);
    lines.write(line(1));
    await new Promise<void>((resolve) => lines.flush(() => resolve()));
    expect(writes).toEqual([line(1)]);
    expect(calls).toEqual(["flush"]);
    lines.write(line(2));
    lines.write(line(3));
    lines.flushSync();
    expect(writes).toEqual([line(1), line(2) + line(3)]);
    expect(calls).toEqual(["flush", "flushSync"]);
  });

  describe("on stdout through pino, in a process of its own", () => {
    const dir = mkdtempSync(join(tmpdir(), "gathered-lines-"));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    const source = fileURLToPath(new URL("../../packages/gateway/src/gathered-log-lines.ts", import.meta.url));

    // Logs `count` lines through pino into GatheredLogLines over stdout, then leaves as `end` says.
    async function run(count: number, end: string): Promise<{ stdout: string; code: number | null }> {
      const script = join(dir, `log-${Math.random().toString(36).slice(2)}.mts`);
      writeFileSync(
        script,
        `import pino from ${JSON.stringify(pathToFileURL(createRequire(source).resolve("pino")).href)};\n` +
          `import { GatheredLogLines } from ${JSON.stringify(source)};\n` +
          `const log = pino({ base: undefined, timestamp: false }, new GatheredLogLines(pino.destination({ dest: 1, minLength: 1 }), 16 * 1024, 60_000));\n` +
          `for (let i = 0; i < ${count}; i++) log.info({ i }, "line");\n` +
          `${end}\n`,
      );
      const child = spawn(process.execPath, ["--import", "tsx", script], { stdio: ["ignore", "pipe", "pipe"], cwd: fileURLToPath(new URL("../../packages/gateway/", import.meta.url)) });
      let stdout = "";
      child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.resume();
      const killer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
      clearTimeout(killer);
      return { stdout, code };
    }

    const indexes = (stdout: string) => stdout.split("\n").filter(Boolean).map((l) => (JSON.parse(l) as { i: number }).i);
    const upTo = (n: number) => Array.from({ length: n }, (_, i) => i);

    it("writes every line, in order, when the process exits by itself with lines still gathered", async () => {
      const { stdout, code } = await run(50, "");
      expect(code).toBe(0);
      expect(indexes(stdout)).toEqual(upTo(50));
    });

    it("writes every line, in order, on process.exit() in the middle of a write", async () => {
      const { stdout, code } = await run(5_000, "process.exit(3);");
      expect(code).toBe(3);
      expect(indexes(stdout)).toEqual(upTo(5_000));
    });

    it("writes every line on a crash (an uncaught exception)", async () => {
      const { stdout, code } = await run(700, `setImmediate(() => { throw new Error("boom"); });`);
      expect(code).toBe(1);
      expect(indexes(stdout)).toEqual(upTo(700));
    });
  });
});
