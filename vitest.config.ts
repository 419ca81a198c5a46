import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Real servers on loopback: give slow CI machines room, but never hang.
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Two cores: files that start OAuth2 servers and gateways compete for them.
    pool: "forks",
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
  },
});
