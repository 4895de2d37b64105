#!/usr/bin/env node
// Validates an OpenAPI document (kailashd's GET /openapi.json) with @apidevtools/swagger-parser: the
// OpenAPI 3.1 schema and every $ref resolved. swagger-parser's further checks (path parameters
// declared, operationIds unique) run for Swagger 2.0 only, so the same checks follow here for 3.x.
// Usage: node validate.js FILE, or node validate.js - (stdin).
// Exit 0 and "valid" on stdout; exit 1 with the errors on stderr; exit 2 for a usage error.
"use strict";
const fs = require("fs");
const SwaggerParser = require("@apidevtools/swagger-parser");

const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

// What swagger-parser's spec validator checks for Swagger 2.0, on the dereferenced document.
function specErrors(api) {
  const errors = [];
  const ids = new Set();
  for (const [path, item] of Object.entries(api.paths || {})) {
    const names = (path.match(/\{[^}]*\}/g) || []).map((s) => s.slice(1, -1));
    for (const m of METHODS) {
      const op = item[m];
      if (!op) continue;
      const inPath = [...(item.parameters || []), ...(op.parameters || [])].filter((p) => p.in === "path");
      for (const n of names)
        if (!inPath.some((p) => p.name === n && p.required === true))
          errors.push(`${m} ${path}: path parameter {${n}} is not declared (in: path, required: true)`);
      for (const p of inPath)
        if (!names.includes(p.name)) errors.push(`${m} ${path}: path parameter '${p.name}' is not in the path`);
      if (op.operationId !== undefined) {
        if (ids.has(op.operationId)) errors.push(`${m} ${path}: operationId '${op.operationId}' is not unique`);
        ids.add(op.operationId);
      }
    }
  }
  return errors;
}

async function main(argv) {
  if (argv.length !== 1) {
    process.stderr.write("usage: node validate.js FILE|-\n");
    return 2;
  }
  let doc;
  try {
    doc = JSON.parse(fs.readFileSync(argv[0] === "-" ? 0 : argv[0], "utf8"));
  } catch (e) {
    process.stderr.write("not JSON: " + e.message + "\n");
    return 1;
  }
  try {
    // resolve.external off: the document must stand alone; nothing is fetched.
    const api = await SwaggerParser.validate(doc, { resolve: { external: false } });
    const errors = specErrors(api);
    if (errors.length) throw new Error(errors.join("\n"));
  } catch (e) {
    process.stderr.write(String(e && e.message ? e.message : e) + "\n");
    if (e && Array.isArray(e.details)) process.stderr.write(JSON.stringify(e.details, null, 2) + "\n");
    return 1;
  }
  process.stdout.write("valid\n");
  return 0;
}

main(process.argv.slice(2)).then((rc) => process.exit(rc));
