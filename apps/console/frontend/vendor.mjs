// Copies the built, minified files of the console's chart and graph libraries (and their licences)
// from node_modules into the console's static folder, where whitenoise serves them.
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "static", "console", "vendor");
const files = [
  ["uplot/dist/uPlot.iife.min.js", "uPlot.iife.min.js"],
  ["uplot/dist/uPlot.min.css", "uPlot.min.css"],
  ["uplot/LICENSE", "uPlot.LICENSE.txt"],
  ["@dagrejs/dagre/dist/dagre.min.js", "dagre.min.js"],
  ["@dagrejs/dagre/LICENSE", "dagre.LICENSE.txt"],
];
mkdirSync(out, { recursive: true });
for (const [from, to] of files) copyFileSync(join(here, "node_modules", from), join(out, to));
console.log(`vendored ${files.length} files into ${out}`);
