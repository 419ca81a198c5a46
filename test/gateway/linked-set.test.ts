// The list the gateway's server keeps its open responses, sessions and
// connections in (instead of a Set, whose rebuilt hash tables kept finished
// requests alive through garbage collections: see linked-set.ts). What the
// drain and the shutdown rely on: every member added and not deleted is
// listed, in any order of deletion, and a deleted entry holds nothing.
import { describe, expect, it } from "vitest";
import { LinkedSet } from "../../packages/gateway/src/linked-set.js";

describe("LinkedSet", () => {
  it("lists what was added and not deleted, whichever entries go (first, middle, last, all)", () => {
    const set = new LinkedSet<string>();
    const entries = ["a", "b", "c", "d", "e"].map((v) => set.add(v));
    expect(set.values().sort()).toEqual(["a", "b", "c", "d", "e"]);
    set.delete(entries[2]!); // middle
    set.delete(entries[0]!); // oldest (the tail)
    set.delete(entries[4]!); // newest (the head)
    expect(set.values().sort()).toEqual(["b", "d"]);
    expect(set.size).toBe(2);
    set.delete(entries[1]!);
    set.delete(entries[3]!);
    expect(set.values()).toEqual([]);
    expect(set.size).toBe(0);
    set.add("f");
    expect(set.values()).toEqual(["f"]);
  });

  it("deleting an entry twice changes nothing the second time", () => {
    const set = new LinkedSet<number>();
    const one = set.add(1);
    set.add(2);
    set.delete(one);
    set.delete(one);
    expect(set.values()).toEqual([2]);
    expect(set.size).toBe(1);
  });

  it("a deleted entry no longer references its value or its neighbours", () => {
    const set = new LinkedSet<object>();
    set.add({});
    const middle = set.add({});
    set.add({});
    set.delete(middle);
    expect(middle).toMatchObject({ value: undefined, previous: undefined, next: undefined });
  });

  it("values() is a copy: deleting while going through it skips nothing", () => {
    const set = new LinkedSet<number>();
    const entries = [1, 2, 3, 4].map((v) => set.add(v));
    const seen: number[] = [];
    for (const value of set.values()) {
      seen.push(value);
      for (const entry of entries) set.delete(entry);
    }
    expect(seen.sort()).toEqual([1, 2, 3, 4]);
    expect(set.size).toBe(0);
  });
});
