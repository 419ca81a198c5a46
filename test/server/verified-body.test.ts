import { createServer } from "node:http";
import { connect, type AddressInfo } from "node:net";
import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { readVerifiedBody } from "../../src/server/verified-body.js";
import { bodySha256, EMPTY_BODY_SHA256 } from "../../src/signing/index.js";

// The body reader on its own, over a real stream: whatever the chunking,
// the check is asked about the SHA-256 of exactly the bytes received, and
// the chunks handed back are the ones received (the same objects).
function checkRecording() {
  const asked: string[] = [];
  return { asked, check: { verifyBody: (sha256: string) => (asked.push(sha256), undefined) } };
}

async function readChunks(chunks: readonly Buffer[], maxBodyBytes = 1 << 20) {
  const stream = new PassThrough();
  const { asked, check } = checkRecording();
  const pending = readVerifiedBody(stream, check, maxBodyBytes, 10_000);
  for (const chunk of chunks) stream.write(chunk);
  stream.end();
  return { body: await pending, asked };
}

describe("readVerifiedBody", () => {
  const bytes = Buffer.from("the quick brown fox jumps over the lazy dog, again and again");
  const splits: Record<string, Buffer[]> = {
    "no chunk": [],
    "one chunk": [bytes],
    "two chunks": [bytes.subarray(0, 7), bytes.subarray(7)],
    "three chunks, one empty": [bytes.subarray(0, 3), Buffer.alloc(0), bytes.subarray(3)],
    "one byte per chunk": [...bytes].map((b) => Buffer.from([b])),
  };

  for (const [label, chunks] of Object.entries(splits)) {
    it(`hashes exactly the bytes received: ${label}`, async () => {
      const { body, asked } = await readChunks(chunks);
      const received = Buffer.concat(chunks);
      expect(asked).toEqual([chunks.length === 0 ? EMPTY_BODY_SHA256 : bodySha256(received)]);
      expect(body.kind).toBe("verified");
      if (body.kind !== "verified") return;
      expect(body.byteLength).toBe(received.byteLength);
      expect(Buffer.concat(body.chunks).equals(received)).toBe(true);
    });
  }

  it("hands back the chunks it received, not copies", async () => {
    const chunks = [bytes.subarray(0, 10), bytes.subarray(10)];
    const { body } = await readChunks(chunks);
    expect(body.kind === "verified" && body.chunks.every((c, i) => c.buffer === chunks[i]!.buffer)).toBe(true);
  });

  it("a change in any chunk changes the hash the check is asked about", async () => {
    const original = await readChunks([bytes.subarray(0, 10), bytes.subarray(10)]);
    for (const at of [0, 9, 10, bytes.length - 1]) {
      const tampered = Buffer.from(bytes);
      tampered[at] = (tampered[at] as number) ^ 1;
      const { asked } = await readChunks([tampered.subarray(0, 10), tampered.subarray(10)]);
      expect(asked[0]).not.toBe(original.asked[0]);
    }
  });

  it("reads text chunks (a stream with an encoding set) as their UTF-8 bytes", async () => {
    const stream = new PassThrough();
    stream.setEncoding("utf8");
    const { asked, check } = checkRecording();
    const pending = readVerifiedBody(stream, check, 1024, 10_000);
    stream.write("héllo ");
    stream.end("wörld");
    expect((await pending).kind).toBe("verified");
    expect(asked).toEqual([bodySha256(Buffer.from("héllo wörld"))]);
  });

  it("stops past maxBodyBytes, holds nothing and never asks the check", async () => {
    const { body, asked } = await readChunks([bytes.subarray(0, 20), bytes.subarray(20)], 30);
    expect(body).toEqual({ kind: "too_large" });
    expect(asked).toEqual([]);
  });

  it("rejects when the stream fails mid-body, without asking the check", async () => {
    const stream = new PassThrough();
    const { asked, check } = checkRecording();
    const pending = readVerifiedBody(stream, check, 1024, 10_000);
    stream.write(bytes.subarray(0, 5));
    stream.destroy(new Error("connection reset"));
    await expect(pending).rejects.toThrow("connection reset");
    expect(asked).toEqual([]);
  });

  it("refuses a rejected verdict, whatever the chunking", async () => {
    for (const chunks of [[bytes], [bytes.subarray(0, 5), bytes.subarray(5)]]) {
      const stream = new PassThrough();
      const pending = readVerifiedBody(stream, { verifyBody: () => "invalid_signature" }, 1024, 10_000);
      for (const chunk of chunks) stream.write(chunk);
      stream.end();
      expect(await pending).toEqual({ kind: "rejected", reason: "invalid_signature" });
    }
  });

  it("gathers a body sent a byte at a time into few blocks, in order, hashing exactly what came", async () => {
    // 40,000 one-byte pieces with a few large ones among them.
    const pieces: Buffer[] = [];
    for (let i = 0; i < 40_000; i++) {
      pieces.push(Buffer.from([i % 251]));
      if (i % 10_000 === 5_000) pieces.push(Buffer.alloc(3000, i % 7));
    }
    const { body, asked } = await readChunks(pieces);
    const received = Buffer.concat(pieces);
    expect(asked).toEqual([bodySha256(received)]);
    expect(body.kind).toBe("verified");
    if (body.kind !== "verified") return;
    expect(body.byteLength).toBe(received.byteLength);
    expect(Buffer.concat(body.chunks).equals(received)).toBe(true);
    // 16 loose pieces, the 4 large ones, and 16 KiB blocks around them: not 40,000 Buffers.
    expect(body.chunks.length).toBeLessThanOrEqual(16 + 4 + Math.ceil(received.byteLength / (16 * 1024)) + 4);
  });

  it("gathers an HTTP/1.1 chunked body of one-byte chunks that a real server receives", async () => {
    let chunkCount = -1;
    let same = false;
    const bytes = Buffer.from(Array.from({ length: 5000 }, (_, i) => i % 256));
    const server = createServer((req, res) => {
      const { check } = checkRecording();
      void readVerifiedBody(req, check, 1 << 20, 10_000).then((body) => {
        if (body.kind === "verified") {
          chunkCount = body.chunks.length;
          same = Buffer.concat(body.chunks).equals(bytes);
        }
        res.end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const wire = [...bytes].map((b) => `1\r\n${String.fromCharCode(b)}\r\n`).join("");
      await new Promise<void>((resolve, reject) => {
        const socket = connect(port, "127.0.0.1");
        socket.on("error", reject);
        socket.on("data", () => {});
        socket.on("close", () => resolve());
        socket.write(`POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${wire}0\r\n\r\n`, "latin1");
      });
    } finally {
      server.close();
    }
    expect(same).toBe(true);
    expect(chunkCount).toBeGreaterThan(0);
    expect(chunkCount).toBeLessThanOrEqual(16 + 1);
  });
});

describe("on a runtime without Promise.withResolvers (Node 20: unsupported, but loading must not fail)", () => {
  it("the body reader loads and reads a body", async () => {
    const { execFile } = await import("node:child_process");
    const script = `
      delete Promise.withResolvers;
      const { readVerifiedBody } = await import(${JSON.stringify(new URL("../../src/server/verified-body.ts", import.meta.url).href)});
      const { PassThrough } = await import("node:stream");
      const stream = new PassThrough();
      const pending = readVerifiedBody(stream, { verifyBody: () => undefined }, 1024, 10_000);
      stream.end("hello");
      const body = await pending;
      console.log(body.kind, body.byteLength);
    `;
    const out = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], (error, stdout, stderr) =>
        error ? reject(new Error(stderr || error.message)) : resolve(stdout),
      ),
    );
    expect(out.trim()).toBe("verified 5");
  });
});
