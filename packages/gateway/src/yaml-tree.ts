import {
  CORE_SCHEMA,
  EVENT_ALIAS,
  EVENT_DOCUMENT,
  EVENT_MAPPING,
  EVENT_POP,
  EVENT_SCALAR,
  EVENT_SEQUENCE,
  getScalarValue,
  NOT_RESOLVED,
  parseEvents,
  SCALAR_STYLE_PLAIN,
  YAMLException,
  type Event,
  type ScalarTagDefinition,
} from "js-yaml";

/**
 * A node of a YAML document with where it starts, for configuration readers
 * that name the line of every problem they find.
 *
 * Why not js-yaml's `load` (plain values) or the `yaml` package's document
 * API (nodes with ranges): `load` forgets positions, and `yaml`'s parser took
 * ~1 s for a 10,000-route routes file on a two-core machine, against
 * ~0.2 s for js-yaml's event parser. Its events carry source offsets; the
 * nodes are built from them, plain scalars typed by the core schema's own
 * resolvers.
 */
export type YamlNode = YamlScalar | YamlMap | YamlSeq | YamlUnsupported;

/** A scalar, its plain form resolved by YAML 1.2's core schema (`true`, `12`, `~` → `null`). */
export interface YamlScalar {
  readonly kind: "scalar";
  readonly value: string | number | boolean | null;
  /** Offset in the source of the node's first character. */
  readonly offset: number;
}

/**
 * A mapping: `keys[i]` maps to `values[i]`, in source order, duplicate keys
 * included (the reader refuses them). Two lists rather than a pair object
 * per entry: a 10,000-route file has some 40,000 entries.
 */
export interface YamlMap {
  readonly kind: "map";
  readonly keys: readonly YamlNode[];
  readonly values: readonly YamlNode[];
  readonly offset: number;
}

/** A sequence. */
export interface YamlSeq {
  readonly kind: "seq";
  readonly items: readonly YamlNode[];
  readonly offset: number;
}

/**
 * What a configuration file has no use for: an alias (`*name`) or an
 * explicitly tagged node (`!!str 5`, `!custom x`). Refused by name rather
 * than half-supported, so a file means one thing.
 */
export interface YamlUnsupported {
  readonly kind: "unsupported";
  readonly what: string;
  readonly offset: number;
}

/** A parsed YAML text: its single document's root (`null` when empty) or its syntax error. */
export interface YamlTree {
  readonly root: YamlNode | null;
  /** A syntax error, or a second document; at most one (YAML parsing stops at the first). */
  readonly error?: { readonly offset: number; readonly message: string } | undefined;
  /** The 1-based line of a source offset. */
  line(offset: number): number;
}

/** Parses `text` (one YAML 1.2 document) into {@link YamlNode}s with offsets; never throws for bad YAML. */
export function readYamlTree(text: string): YamlTree {
  const line = lineOf(text);
  let events: Event[];
  try {
    events = parseEvents(text, {});
  } catch (e) {
    if (!(e instanceof YAMLException)) throw e;
    return { root: null, error: { offset: e.mark?.position ?? 0, message: e.reason || "invalid YAML" }, line };
  }
  return { ...buildTree(text, events), line };
}

/** A collection being built: a sequence's items, or a map's keys and values (a key is added first, its value next). */
interface Frame {
  readonly map: boolean;
  readonly items: YamlNode[];
  readonly values: YamlNode[];
}

/**
 * Builds the nodes from the event stream: a flat, document-ordered list
 * where a collection's events are followed by its children's and a close.
 */
function buildTree(text: string, events: readonly Event[]): Pick<YamlTree, "root" | "error"> {
  const stack: Frame[] = [];
  let root: YamlNode | null = null;
  let documents = 0;
  let lastOffset = 0;
  for (const event of events) {
    let node: YamlNode;
    let opened: Frame | undefined;
    switch (event.type) {
      case EVENT_DOCUMENT:
        if (++documents > 1) {
          return { root: null, error: { offset: nextOffset(events, event) ?? text.length, message: "expected one YAML document, found several (---)" } };
        }
        continue;
      case EVENT_POP:
        stack.pop();
        continue;
      case EVENT_ALIAS:
        node = { kind: "unsupported", what: `an alias (*${text.slice(event.anchorStart, event.anchorEnd)})`, offset: (lastOffset = event.anchorStart) };
        break;
      case EVENT_SCALAR: {
        const offset = event.valueStart >= 0 ? (lastOffset = event.valueStart) : lastOffset;
        if (event.tagStart >= 0) {
          node = { kind: "unsupported", what: `a YAML tag (${text.slice(event.tagStart, event.tagEnd)})`, offset };
        } else {
          const source = getScalarValue(text, event);
          node = { kind: "scalar", value: event.style === SCALAR_STYLE_PLAIN ? plainValue(source) : source, offset };
        }
        break;
      }
      case EVENT_MAPPING:
      case EVENT_SEQUENCE: {
        const offset = (lastOffset = event.start);
        const map = event.type === EVENT_MAPPING;
        opened = { map, items: [], values: map ? [] : NO_VALUES };
        const collection: YamlMap | YamlSeq = map
          ? { kind: "map", keys: opened.items, values: opened.values, offset }
          : { kind: "seq", items: opened.items, offset };
        // A tagged collection is refused as a whole; its children are still read, into the unused one.
        node = event.tagStart >= 0 ? { kind: "unsupported", what: `a YAML tag (${text.slice(event.tagStart, event.tagEnd)})`, offset } : collection;
        break;
      }
      default:
        continue;
    }
    const parent = stack[stack.length - 1];
    if (parent === undefined) root = node;
    else if (parent.map && parent.items.length > parent.values.length) parent.values.push(node);
    else parent.items.push(node);
    if (opened !== undefined) stack.push(opened);
  }
  return { root };
}

const NO_VALUES: YamlNode[] = [];

function nextOffset(events: readonly Event[], after: Event): number | undefined {
  for (let i = events.indexOf(after) + 1; i < events.length; i++) {
    const event = events[i] as Event;
    if ("start" in event) return event.start;
    if ("valueStart" in event && event.valueStart >= 0) return event.valueStart;
  }
  return undefined;
}

/** The core schema's implicit scalar types (null, bool, int, float), in the order YAML 1.2 tries them. */
const IMPLICIT = CORE_SCHEMA.tags.filter((tag) => tag.nodeKind === "scalar" && tag.implicit) as readonly ScalarTagDefinition[];

/** The implicit types a plain scalar starting with a given character may have (most: none). */
const implicitByFirst = new Map<string, readonly ScalarTagDefinition[]>();

/** The value of a plain (unquoted) scalar under YAML 1.2's core schema: `true`, `12`, `~` → `null`, else the text. */
function plainValue(source: string): YamlScalar["value"] {
  const first = source.charAt(0);
  let candidates = implicitByFirst.get(first);
  if (candidates === undefined) {
    candidates = IMPLICIT.filter((tag) => tag.implicitFirstChars === null || tag.implicitFirstChars.includes(first));
    implicitByFirst.set(first, candidates);
  }
  for (const tag of candidates) {
    const value: unknown = tag.resolve(source, false, tag.tagName);
    if (value === NOT_RESOLVED) continue;
    if (value === null || typeof value === "boolean" || typeof value === "number") return value;
  }
  return source;
}

/** Maps offsets to 1-based lines, with the line starts found on first use. */
function lineOf(text: string): (offset: number) => number {
  let starts: number[] | undefined;
  return (offset) => {
    if (starts === undefined) {
      starts = [0];
      for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", i + 1)) starts.push(i + 1);
    }
    let low = 0;
    let high = starts.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if ((starts[middle] as number) <= offset) low = middle;
      else high = middle - 1;
    }
    return low + 1;
  };
}
