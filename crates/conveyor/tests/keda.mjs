// Validates KEDA resources (TriggerAuthentication, ScaledObject) in the YAML files given
// against KEDA's CRD schemas, as packaged by @kubernetes-models/keda. Exits 1 naming the
// first problem. Run by crates/conveyor/tests/ops.rs with NODE_PATH set.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(process.env.NODE_PATH + "/");
const { parseAllDocuments } = require("yaml");
const keda = require("@kubernetes-models/keda/keda.sh/v1alpha1");

let checked = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    const object = doc.toJS();
    if (!object || object.apiVersion !== "keda.sh/v1alpha1") continue;
    const Kind = keda[object.kind];
    if (!Kind) {
      console.error(`${file}: unknown KEDA kind ${object.kind}`);
      process.exit(1);
    }
    try {
      new Kind(object).validate();
    } catch (error) {
      console.error(`${file}: ${object.kind} ${object.metadata?.name}: ${error.message}`);
      process.exit(1);
    }
    checked += 1;
  }
}
console.log(`${checked} KEDA resources valid`);
