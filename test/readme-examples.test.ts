import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

// The README quotes examples/service verbatim; scripts/consumer-test.sh runs
// those files against the packed package. This keeps the two from drifting.
const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");

describe("README quotes examples/service as it is", () => {
  it.each(["routes.ts", "server.ts", "greeter.test.ts", "client.ts", "buf.yaml", "buf.gen.yaml"])("%s", (file) => {
    const text = readFileSync(new URL(`../examples/service/${file}`, import.meta.url), "utf8");
    const fence = file.endsWith(".ts") ? "ts" : "yaml";
    expect(readme).toContain("```" + fence + "\n" + text + "```");
  });
});
