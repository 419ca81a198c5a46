// One identity type: the identity fields are defined once (IdentityHeaderValues,
// in the signing layer) and every other identity type derives from it, so a
// field added there reaches the server, the gateway and the testing helpers.
// The type assertions are checked by `tsc --noEmit`.
import { describe, expect, expectTypeOf, it } from "vitest";
import type { CallerIdentity as GatewayCallerIdentity, ClaimMapping } from "../../packages/gateway/src/index.js";
import type { GatewayIdentity, IdentityField as ServerIdentityField, MissingUserDetails } from "../../src/server/index.js";
import {
  identityFieldHeader,
  identityFields,
  identityFromHeaders,
  identityHeaderNames,
  identityHeaders,
  readGatewayHeaders,
  type CallerIdentity,
  type IdentityField,
  type IdentityHeaderValues,
} from "../../src/signing/index.js";
import type { GatewayTestUser } from "../../src/testing/index.js";

describe("one identity type", () => {
  it("derives every identity type from IdentityHeaderValues", () => {
    expectTypeOf<IdentityField>().toEqualTypeOf<keyof IdentityHeaderValues>();
    expectTypeOf<ServerIdentityField>().toEqualTypeOf<IdentityField>();
    expectTypeOf<GatewayCallerIdentity>().toEqualTypeOf<CallerIdentity>();
    expectTypeOf<keyof ClaimMapping>().toEqualTypeOf<IdentityField>();
    expectTypeOf<GatewayIdentity>().toMatchTypeOf<CallerIdentity>();
    expectTypeOf<CallerIdentity["email"]>().toEqualTypeOf<IdentityHeaderValues["email"]>();
    expectTypeOf<MissingUserDetails["email"]>().toEqualTypeOf<IdentityHeaderValues["email"]>();
    expectTypeOf<GatewayTestUser["role"]>().toEqualTypeOf<IdentityHeaderValues["role"]>();
  });

  it("maps each field to its header, in the order v2 signs them", () => {
    expect(identityFields.map((f) => identityFieldHeader[f])).toEqual([...identityHeaderNames]);
  });

  it("reads back what identityHeaders writes", () => {
    const identity: IdentityHeaderValues = {
      clientId: "web",
      userId: "sub-1",
      email: "a@example.com",
      firstName: "Ada",
      lastName: "Lovelace",
      scopes: ["read", "write"],
      orgId: "org-7",
      role: "admin",
    };
    const headers = identityHeaders(identity);
    expect(identityFromHeaders(identity.clientId, (name) => headers[name])).toEqual(identity);
  });
});

describe("the one header reader", () => {
  it("keeps the first occurrence of each gateway header, flags repeats and unsigned identity headers", () => {
    const read = readGatewayHeaders([
      "X-Client-Id", "web",
      "Accept", "*/*",
      "x-client-id", "other",
      "X-User-Admin", "true",
      "Content-Type", "application/json",
    ]);
    expect(Object.fromEntries(read.values)).toEqual({ "x-client-id": "web", "x-user-admin": "true", "content-type": "application/json" });
    expect(read.repeated).toBe(true);
    expect(read.unsignedIdentity).toBe(true);
    expect(readGatewayHeaders(["x-client-id", "web", "x-user-id", "sub"])).toMatchObject({ repeated: false, unsignedIdentity: false });
  });
});
