/**
 * The JSON-schema battery of the structured-output tests: every feature the allow-list accepts,
 * each schema small enough that a random-weight model sampled at temperature 1 finishes it well
 * within the test's maxTokens (strings and arrays are bounded).
 */
export const SCHEMA_BATTERY: { name: string; schema: Record<string, unknown> }[] = [
  { name: "boolean", schema: { type: "boolean" } },
  { name: "null", schema: { type: "null" } },
  { name: "number", schema: { type: "number" } },
  { name: "integer", schema: { type: "integer" } },
  { name: "nullable integer", schema: { type: ["integer", "null"] } },
  { name: "numbers in an object", schema: { type: "object", properties: { t: { type: "number" }, p: { type: ["number", "null"] } }, required: ["t", "p"], additionalProperties: false } },
  { name: "integer range", schema: { type: "integer", minimum: 7, maximum: 123 } },
  { name: "negative integer range", schema: { type: "integer", minimum: -250, maximum: -3 } },
  { name: "exclusive integer range", schema: { type: "integer", exclusiveMinimum: 0, exclusiveMaximum: 1000 } },
  { name: "integer range across zero", schema: { type: "integer", minimum: -5, maximum: 99999 } },
  { name: "string enum", schema: { enum: ["ok", "leaking", "offline"] } },
  { name: "mixed enum", schema: { enum: ["a", 1, null, true, { x: [1, 2] }] } },
  { name: "const object", schema: { const: { k: [1, "two", null] } } },
  { name: "bounded string", schema: { type: "string", minLength: 2, maxLength: 6 } },
  { name: "pattern string", schema: { type: "string", pattern: "^[A-Z]{2}-[0-9]{3}$" } },
  { name: "unicode enum", schema: { enum: ["café", "日本語", "Ünïcödé ✓", "emoji 🚰"] } },
  { name: "unicode bounded string", schema: { type: "object", properties: { name: { type: "string", minLength: 1, maxLength: 4 } }, required: ["name"], additionalProperties: false } },
  { name: "nullable type list", schema: { type: ["boolean", "null"] } },
  {
    name: "inspection form",
    schema: {
      type: "object",
      properties: {
        pump_id: { type: "integer", minimum: 1, maximum: 500 },
        pressure_bar: { type: "integer", minimum: 0, maximum: 60 },
        status: { enum: ["ok", "leaking", "offline"] },
      },
      required: ["pump_id", "pressure_bar", "status"],
      additionalProperties: false,
    },
  },
  {
    name: "optional properties",
    schema: {
      type: "object",
      properties: { a: { type: "boolean" }, b: { type: "integer", minimum: 0, maximum: 9 }, c: { type: "null" } },
      additionalProperties: false,
    },
  },
  {
    name: "required after optional",
    schema: {
      type: "object",
      properties: { opt: { type: "boolean" }, req: { enum: ["x", "y"] }, tail: { type: "integer", minimum: 0, maximum: 3 } },
      required: ["req"],
      additionalProperties: false,
    },
  },
  {
    name: "nested objects",
    schema: {
      type: "object",
      properties: {
        site: { type: "object", properties: { id: { type: "integer", minimum: 1, maximum: 40 }, ok: { type: "boolean" } }, required: ["id", "ok"], additionalProperties: false },
        meta: { type: "object", properties: { level: { type: "object", properties: { n: { type: "integer", minimum: 0, maximum: 5 } }, required: ["n"], additionalProperties: false } }, required: ["level"], additionalProperties: false },
      },
      required: ["site", "meta"],
      additionalProperties: false,
    },
  },
  { name: "array min/max items", schema: { type: "array", items: { type: "boolean" }, minItems: 2, maxItems: 4 } },
  { name: "array of enums", schema: { type: "array", items: { enum: ["r", "g", "b"] }, minItems: 1, maxItems: 3 } },
  { name: "empty or short array", schema: { type: "array", items: { type: "integer", minimum: 0, maximum: 99 }, maxItems: 2 } },
  { name: "tuple (prefixItems)", schema: { type: "array", prefixItems: [{ type: "integer", minimum: 1, maximum: 9 }, { enum: ["a", "b"] }, { type: "boolean" }], items: false } },
  {
    name: "array of objects",
    schema: {
      type: "array",
      items: { type: "object", properties: { k: { enum: ["x", "y"] }, v: { type: "integer", minimum: 0, maximum: 50 } }, required: ["k", "v"], additionalProperties: false },
      minItems: 1,
      maxItems: 2,
    },
  },
  { name: "anyOf", schema: { anyOf: [{ type: "integer", minimum: 0, maximum: 9 }, { enum: ["none"] }, { type: "null" }] } },
  { name: "oneOf distinct types", schema: { oneOf: [{ type: "boolean" }, { type: "integer", minimum: 10, maximum: 20 }, { type: "null" }] } },
  {
    name: "oneOf discriminated objects",
    schema: {
      oneOf: [
        { type: "object", properties: { kind: { const: "valve" }, open: { type: "boolean" } }, required: ["kind", "open"], additionalProperties: false },
        { type: "object", properties: { kind: { const: "pump" }, rpm: { type: "integer", minimum: 0, maximum: 3000 } }, required: ["kind", "rpm"], additionalProperties: false },
      ],
    },
  },
  {
    name: "$ref/$defs",
    schema: {
      $defs: { point: { type: "object", properties: { x: { type: "integer", minimum: -9, maximum: 9 }, y: { type: "integer", minimum: -9, maximum: 9 } }, required: ["x", "y"], additionalProperties: false } },
      type: "object",
      properties: { from: { $ref: "#/$defs/point" }, to: { $ref: "#/$defs/point" } },
      required: ["from", "to"],
      additionalProperties: false,
    },
  },
  {
    name: "definitions + ref in array",
    schema: {
      definitions: { tag: { enum: ["hot", "cold", "wet"] } },
      type: "array",
      items: { $ref: "#/definitions/tag" },
      minItems: 1,
      maxItems: 3,
    },
  },
  {
    name: "one required property",
    schema: { type: "object", properties: { id: { type: "integer", minimum: 0, maximum: 9 } }, required: ["id"], additionalProperties: false },
  },
  {
    name: "annotations",
    schema: { title: "Reading", description: "A meter reading", type: "object", properties: { value: { type: "integer", minimum: 0, maximum: 999, description: "kWh", default: 0 } }, required: ["value"], additionalProperties: false },
  },
  {
    name: "string lengths in object",
    schema: {
      type: "object",
      properties: { code: { type: "string", minLength: 3, maxLength: 3 }, note: { type: "string", maxLength: 5 } },
      required: ["code", "note"],
      additionalProperties: false,
    },
  },
  {
    name: "deep mixed",
    schema: {
      type: "object",
      properties: {
        readings: { type: "array", items: { anyOf: [{ type: "integer", minimum: 0, maximum: 99 }, { type: "null" }] }, minItems: 1, maxItems: 3 },
        unit: { const: "bar" },
        flags: { type: "object", properties: { alarm: { type: "boolean" } }, required: ["alarm"], additionalProperties: false },
      },
      required: ["readings", "unit", "flags"],
      additionalProperties: false,
    },
  },
  { name: "pattern with alternation", schema: { type: "string", pattern: "^(north|south|east|west)-[1-4]$" } },
];
