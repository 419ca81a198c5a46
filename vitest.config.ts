import { defaultServerConditions } from "vite";
import { defineConfig } from "vitest/config";

// Workspace imports (connect-gateway/*, @connect-gateway/gateway) resolve to
// their sources: tests run against the code, not a stale build.
// Without Vite's "module" condition, which Node does not know: packages
// resolve as they do in production (@opentelemetry/api's "module" build has
// extensionless imports that only a bundler can load).
const conditions = ["connect-gateway-source", ...defaultServerConditions.filter((c) => c !== "module")];

export default defineConfig({
  resolve: { conditions },
  ssr: { resolve: { conditions, externalConditions: ["connect-gateway-source"] } },
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
