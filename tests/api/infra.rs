//! Keeps the infrastructure template honest: `infra/azuredeploy.json` (the ARM JSON the "Deploy
//! to Azure" button uses) and `infra/main.bicep` (its source) are read as text and checked
//! against each other and against the app: every parameter and variable referenced is declared
//! and every one declared is used; the app settings are exactly the ones the app reads (the
//! code's own list, `config::setting_names()`) plus the few the platform needs, with defaults
//! the app's own validation accepts; the runtime is the custom handler on Linux, Functions ~4,
//! on either plan; storage and the site are locked down; and the two files declare the same
//! parameters, variables, resources, conditions, settings and outputs.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use strava_latest_run::config::{setting_names, RawSettings, Settings};

/// Settings the template sets that the app itself does not read, and why.
const PLATFORM_SETTINGS: &[(&str, &str)] = &[
    (
        "FUNCTIONS_WORKER_RUNTIME",
        "Linux Consumption: runs the custom handler (Flex Consumption takes functionAppConfig.runtime instead)",
    ),
    (
        "FUNCTIONS_EXTENSION_VERSION",
        "Linux Consumption: Functions host ~4 (Flex Consumption is always ~4)",
    ),
    (
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "the host sends its logs to Application Insights (only when enabled)",
    ),
];

/// `AzureWebJobsStorage` is both: the host needs it, and the app reads its table from it.
const SHARED_WITH_THE_PLATFORM: &str = "AzureWebJobsStorage";

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

fn template() -> Value {
    serde_json::from_str(&read("infra/azuredeploy.json"))
        .unwrap_or_else(|e| panic!("infra/azuredeploy.json is not JSON: {e}"))
}

fn bicep() -> String {
    read("infra/main.bicep")
}

/// Every string in a JSON document (values only, not keys).
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

/// The names in `function('name')` calls within `text`, e.g. `parameters('appName')`.
fn calls(text: &str, function: &str) -> Vec<String> {
    let opener = format!("{function}('");
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(&opener) {
        // `variables(` must not be the tail of a longer name.
        let whole_word = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_');
        rest = &rest[at + opener.len()..];
        if let Some(end) = rest.find('\'') {
            if whole_word {
                names.push(rest[..end].to_owned());
            }
            rest = &rest[end..];
        }
    }
    names
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

fn resources(template: &Value) -> &Vec<Value> {
    template["resources"].as_array().expect("resources array")
}

fn resource<'a>(template: &'a Value, kind: &str) -> &'a Value {
    let found: Vec<&Value> = resources(template)
        .iter()
        .filter(|r| r["type"] == kind)
        .collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

/// `[{name, value}]` of a settings variable.
fn setting_pairs(list: &Value) -> Vec<(String, Value)> {
    list.as_array()
        .expect("a settings list")
        .iter()
        .map(|s| {
            assert_eq!(keys(s), ["name", "value"].map(String::from).into(), "{s}");
            (
                s["name"].as_str().expect("name").to_owned(),
                s["value"].clone(),
            )
        })
        .collect()
}

/// The site's `appSettings` expression.
fn site_settings_expression(template: &Value) -> String {
    resource(template, "Microsoft.Web/sites")["properties"]["siteConfig"]["appSettings"]
        .as_str()
        .expect("appSettings is one expression")
        .to_owned()
}

/// Every app setting the JSON template can set, with where it comes from.
fn json_settings(template: &Value) -> BTreeMap<String, &'static str> {
    let mut names = BTreeMap::new();
    let expression = site_settings_expression(template);
    // createObject('name', 'X', 'value', …): the names set directly on the site.
    let mut rest = expression.as_str();
    while let Some(at) = rest.find("createObject('name', '") {
        rest = &rest[at + "createObject('name', '".len()..];
        let end = rest.find('\'').expect("closing quote");
        let previous = names.insert(rest[..end].to_owned(), "site");
        assert!(previous.is_none(), "{} set twice", &rest[..end]);
    }
    for (variable, origin) in [
        ("appSettings", "always"),
        ("consumptionSettings", "consumption"),
    ] {
        assert!(
            expression.contains(&format!("variables('{variable}')")),
            "the site uses variables('{variable}')"
        );
        for (name, _) in setting_pairs(&template["variables"][variable]) {
            let previous = names.insert(name.clone(), origin);
            assert!(previous.is_none(), "{name} set twice");
        }
    }
    names
}

/// Every `{ name: 'X', value: … }` in the Bicep file, with its value's text.
fn bicep_settings(bicep: &str) -> BTreeMap<String, String> {
    let mut settings = BTreeMap::new();
    let mut rest = bicep;
    while let Some(at) = rest.find("{ name: '") {
        rest = &rest[at + "{ name: '".len()..];
        let end = rest.find('\'').expect("closing quote");
        let name = rest[..end].to_owned();
        let after = rest[end + 1..].trim_start();
        if let Some(value) = after.strip_prefix(", value: ") {
            let value = value.split(" }").next().expect("a value").trim().to_owned();
            let previous = settings.insert(name.clone(), value);
            assert!(previous.is_none(), "{name} set twice in main.bicep");
        }
        rest = &rest[end..];
    }
    settings
}

/// Top-level declarations of one keyword (`param`, `var`, `output`): name → the rest of its line.
fn bicep_declarations(bicep: &str, keyword: &str) -> BTreeMap<String, String> {
    bicep
        .lines()
        .filter_map(|line| line.strip_prefix(&format!("{keyword} ")))
        .map(|rest| {
            let (name, tail) = rest.split_once(' ').expect("a declaration");
            (name.to_owned(), tail.to_owned())
        })
        .collect()
}

/// `resource sym 'type@api' = [if (cond)] {` → sym → (type, api, condition).
fn bicep_resources(bicep: &str) -> BTreeMap<String, (String, String, Option<String>)> {
    bicep
        .lines()
        .filter_map(|line| line.strip_prefix("resource "))
        .map(|rest| {
            let (symbol, rest) = rest.split_once(" '").expect("resource symbol");
            let (type_and_api, rest) = rest.split_once('\'').expect("resource type");
            let (kind, api) = type_and_api.split_once('@').expect("type@api");
            let condition = rest
                .split_once("if (")
                .map(|(_, c)| c.split(')').next().unwrap_or_default().trim().to_owned());
            (
                symbol.to_owned(),
                (kind.to_owned(), api.to_owned(), condition),
            )
        })
        .collect()
}

/// Whether `word` occurs in `text` as a whole identifier.
fn uses_identifier(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_');
        boundary(before) && boundary(after)
    })
}

#[test]
fn every_parameter_and_variable_referenced_is_declared_and_every_declared_one_is_used() {
    let template = template();
    let mut all = Vec::new();
    strings(&template, &mut all);
    let expressions: Vec<&String> = all
        .iter()
        .filter(|s| s.starts_with('[') && !s.starts_with("[["))
        .collect();
    for (function, section) in [("parameters", "parameters"), ("variables", "variables")] {
        let declared = keys(&template[section]);
        let used: BTreeSet<String> = expressions
            .iter()
            .flat_map(|e| calls(e, function))
            .collect();
        let undeclared: Vec<&String> = used.difference(&declared).collect();
        assert!(
            undeclared.is_empty(),
            "{section} used but not declared: {undeclared:?}"
        );
        let unused: Vec<&String> = declared.difference(&used).collect();
        assert!(
            unused.is_empty(),
            "{section} declared but never used: {unused:?}"
        );
    }

    // The same in main.bicep: each declared name appears again after its declaration.
    let bicep = bicep();
    for keyword in ["param", "var"] {
        for name in bicep_declarations(&bicep, keyword).keys() {
            let declaration = format!("{keyword} {name} ");
            let without: String = bicep
                .lines()
                .filter(|l| !l.starts_with(&declaration))
                .collect::<Vec<_>>()
                .join("\n");
            assert!(
                uses_identifier(&without, name),
                "main.bicep: {keyword} {name} is never used"
            );
        }
    }
}

#[test]
fn the_app_settings_are_exactly_the_ones_the_app_reads_plus_the_platform_ones() {
    let template = template();
    let set = json_settings(&template);
    let platform: BTreeSet<&str> = PLATFORM_SETTINGS.iter().map(|(n, _)| *n).collect();
    let app: BTreeSet<&str> = setting_names().iter().copied().collect();
    assert!(
        app.contains(SHARED_WITH_THE_PLATFORM),
        "the app reads {SHARED_WITH_THE_PLATFORM}"
    );
    for name in &app {
        assert!(
            set.contains_key(*name),
            "the app reads {name}, but infra/azuredeploy.json does not set it"
        );
    }
    for name in set.keys() {
        assert!(
            app.contains(name.as_str()) || platform.contains(name.as_str()),
            "infra/azuredeploy.json sets {name}, which neither the app nor the platform reads"
        );
    }
    for name in &platform {
        assert!(
            set.contains_key(*name),
            "the platform setting {name} is set"
        );
    }
    // The app's own settings are set on every plan, not only on one.
    for name in &app {
        assert!(
            matches!(set.get(*name), Some(&"always") | Some(&"site")),
            "{name} is set on every plan"
        );
    }
}

#[test]
fn the_default_settings_pass_the_apps_own_validation() {
    let template = template();
    let parameters = &template["parameters"];
    let mut pairs = vec![(
        SHARED_WITH_THE_PLATFORM.to_owned(),
        // Stands for the connection string built from the account key on Azure.
        "DefaultEndpointsProtocol=https;AccountName=stexample;AccountKey=a2V5;EndpointSuffix=core.windows.net".to_owned(),
    )];
    for (name, value) in setting_pairs(&template["variables"]["appSettings"]) {
        let text = value.as_str().expect("a string value");
        let text = match calls(text, "parameters").as_slice() {
            [parameter] => parameters[parameter]["defaultValue"]
                .as_str()
                .unwrap_or_else(|| panic!("{parameter} has a string default"))
                .to_owned(),
            _ => text.to_owned(),
        };
        pairs.push((name, text));
    }
    let settings = Settings::from_raw(&RawSettings::from_pairs(pairs.clone()))
        .unwrap_or_else(|e| panic!("the template's defaults: {e} ({pairs:?})"));
    assert_eq!(settings.storage.table_name, "strava");
    assert_eq!(settings.storage.setting_name, SHARED_WITH_THE_PLATFORM);
    assert_eq!(
        settings.log_format,
        strava_latest_run::config::LogFormat::Json,
        "Azure gets JSON logs"
    );
    assert!(
        settings.webhook_verify_token.is_none(),
        "no webhook secret by default"
    );
}

#[test]
fn the_runtime_is_the_custom_handler_on_linux_functions_4_on_either_plan() {
    let template = template();
    let variables = &template["variables"];
    let plan = &template["parameters"]["plan"];
    assert_eq!(plan["defaultValue"], "FlexConsumption");
    let allowed: BTreeSet<String> = plan["allowedValues"]
        .as_array()
        .expect("allowed plans")
        .iter()
        .map(|v| v.as_str().expect("plan name").to_owned())
        .collect();
    assert_eq!(allowed, keys(&variables["planSkus"]), "one SKU per plan");
    assert_eq!(
        variables["planSkus"]["FlexConsumption"],
        serde_json::json!({"name": "FC1", "tier": "FlexConsumption"})
    );
    assert_eq!(
        variables["planSkus"]["Consumption"],
        serde_json::json!({"name": "Y1", "tier": "Dynamic"})
    );
    assert_eq!(
        variables["isFlex"],
        "[equals(parameters('plan'), 'FlexConsumption')]"
    );

    let farm = resource(&template, "Microsoft.Web/serverfarms");
    assert_eq!(farm["sku"], "[variables('planSkus')[parameters('plan')]]");
    assert_eq!(farm["properties"]["reserved"], true, "a Linux plan");

    let site = resource(&template, "Microsoft.Web/sites");
    assert_eq!(site["kind"], "functionapp,linux");
    assert_eq!(site["properties"]["reserved"], true, "a Linux app");

    // Flex Consumption: the runtime comes from functionAppConfig.
    assert_eq!(
        site["properties"]["functionAppConfig"],
        "[if(variables('isFlex'), variables('flexConfig'), null())]"
    );
    assert_eq!(
        variables["flexConfig"]["runtime"],
        serde_json::json!({"name": "custom", "version": "1.0"})
    );
    assert_eq!(
        variables["flexConfig"]["deployment"]["storage"]["authentication"]
            ["storageAccountConnectionStringName"],
        SHARED_WITH_THE_PLATFORM
    );
    // Linux Consumption: the runtime and the host version are app settings, set only there
    // (Flex Consumption refuses them).
    let consumption: BTreeMap<String, Value> = setting_pairs(&variables["consumptionSettings"])
        .into_iter()
        .collect();
    assert_eq!(consumption["FUNCTIONS_WORKER_RUNTIME"], "custom");
    assert_eq!(consumption["FUNCTIONS_EXTENSION_VERSION"], "~4");
    assert!(
        site_settings_expression(&template)
            .contains("if(variables('isFlex'), createArray(), variables('consumptionSettings'))"),
        "the Consumption-only settings are left out on Flex Consumption"
    );

    // host.json names the binary scripts/build puts at the app root.
    let host: Value = serde_json::from_str(&read("host.json")).expect("host.json");
    assert_eq!(
        host["customHandler"]["description"]["defaultExecutablePath"],
        "handler"
    );
}

#[test]
fn storage_and_the_site_are_locked_down() {
    let template = template();
    let storage = &resource(&template, "Microsoft.Storage/storageAccounts")["properties"];
    assert_eq!(storage["minimumTlsVersion"], "TLS1_2");
    assert_eq!(storage["allowBlobPublicAccess"], false);
    assert_eq!(storage["supportsHttpsTrafficOnly"], true);
    let container = resource(
        &template,
        "Microsoft.Storage/storageAccounts/blobServices/containers",
    );
    assert_eq!(container["properties"]["publicAccess"], "None");
    assert_eq!(container["condition"], "[variables('isFlex')]");
    let site = &resource(&template, "Microsoft.Web/sites")["properties"];
    assert_eq!(site["httpsOnly"], true);
    assert_eq!(site["siteConfig"]["minTlsVersion"], "1.2");
    assert_eq!(site["siteConfig"]["ftpsState"], "Disabled");
    assert_eq!(
        template["parameters"]["webhookVerifyToken"]["type"],
        "securestring"
    );
    for kind in [
        "Microsoft.Insights/components",
        "Microsoft.OperationalInsights/workspaces",
    ] {
        assert_eq!(
            resource(&template, kind)["condition"],
            "[parameters('enableApplicationInsights')]",
            "{kind} is optional"
        );
    }
}

#[test]
fn the_json_and_the_bicep_agree() {
    let template = template();
    let bicep = bicep();

    // Parameters: names, types, secure, allowed values.
    let params = bicep_declarations(&bicep, "param");
    assert_eq!(
        params.keys().cloned().collect::<BTreeSet<_>>(),
        keys(&template["parameters"]),
        "parameters"
    );
    for (name, tail) in &params {
        let json = &template["parameters"][name];
        let bicep_type = tail.split_whitespace().next().expect("a type");
        let secure = bicep.contains(&format!("@secure()\nparam {name} "));
        let expected = match (bicep_type, secure) {
            ("string", true) => "securestring",
            (other, _) => other,
        };
        assert_eq!(json["type"], expected, "type of {name}");
        if let Some(default) = tail.split_once(" = ").map(|(_, d)| d.trim()) {
            let json_default = &json["defaultValue"];
            match default
                .strip_prefix('\'')
                .and_then(|d| d.strip_suffix('\''))
            {
                Some(text) => assert_eq!(json_default, text, "default of {name}"),
                None if default == "true" || default == "false" => {
                    assert_eq!(json_default, default == "true", "default of {name}")
                }
                None => assert_eq!(json_default, &format!("[{default}]"), "default of {name}"),
            }
        }
    }
    for plan in ["FlexConsumption", "Consumption"] {
        assert!(bicep.contains(&format!("  '{plan}'\n")), "@allowed {plan}");
    }

    // Variables and outputs: the same names.
    assert_eq!(
        bicep_declarations(&bicep, "var")
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>(),
        keys(&template["variables"]),
        "variables"
    );
    assert_eq!(
        bicep_declarations(&bicep, "output")
            .keys()
            .cloned()
            .collect::<BTreeSet<_>>(),
        keys(&template["outputs"]),
        "outputs"
    );

    // Resources: the same types, API versions and conditions.
    let bicep_resources = bicep_resources(&bicep);
    let from_bicep: BTreeSet<(String, String, Option<String>)> = bicep_resources
        .values()
        .map(|(kind, api, condition)| {
            let condition = condition.as_ref().map(|c| {
                if params.contains_key(c) {
                    format!("[parameters('{c}')]")
                } else {
                    format!("[variables('{c}')]")
                }
            });
            (kind.clone(), api.clone(), condition)
        })
        .collect();
    let from_json: BTreeSet<(String, String, Option<String>)> = resources(&template)
        .iter()
        .map(|r| {
            (
                r["type"].as_str().expect("type").to_owned(),
                r["apiVersion"].as_str().expect("apiVersion").to_owned(),
                r["condition"].as_str().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(from_bicep, from_json, "resources");

    // App settings: the same names, and the same values where they are plain.
    let in_bicep = bicep_settings(&bicep);
    let in_json = json_settings(&template);
    assert_eq!(
        in_bicep.keys().collect::<BTreeSet<_>>(),
        in_json.keys().collect::<BTreeSet<_>>(),
        "app settings"
    );
    for variable in ["appSettings", "consumptionSettings"] {
        for (name, value) in setting_pairs(&template["variables"][variable]) {
            let text = value.as_str().expect("string");
            let expected = match calls(text, "parameters").as_slice() {
                [parameter] => parameter.clone(),
                _ => format!("'{text}'"),
            };
            assert_eq!(in_bicep[&name], expected, "value of {name}");
        }
    }

    // The Flex runtime and the plan SKUs.
    assert!(bicep.contains("runtime: { name: 'custom', version: '1.0' }"));
    assert!(bicep.contains("FlexConsumption: { name: 'FC1', tier: 'FlexConsumption' }"));
    assert!(bicep.contains("Consumption: { name: 'Y1', tier: 'Dynamic' }"));
    assert!(bicep.contains("functionAppConfig: isFlex ? flexConfig : null"));
    assert!(bicep.contains("isFlex ? [] : consumptionSettings"));
    assert!(bicep.contains("kind: 'functionapp,linux'"));
    assert!(bicep.contains("httpsOnly: true"));
    assert!(bicep.contains("minimumTlsVersion: 'TLS1_2'"));
    assert!(bicep.contains("allowBlobPublicAccess: false"));
}

/// `deploy/handler.service` with its paths pointed at this build's binary and a scratch
/// environment file, so that systemd can check it here.
fn unit_for_this_machine(dir: &Path) -> std::path::PathBuf {
    let unit = read("deploy/handler.service")
        .replace(
            "/usr/local/bin/strava-latest-run",
            env!("CARGO_BIN_EXE_handler"),
        )
        .replace(
            "/etc/strava-latest-run.env",
            &dir.join("env").display().to_string(),
        );
    std::fs::create_dir_all(dir).expect("scratch dir");
    std::fs::write(
        dir.join("env"),
        "AzureWebJobsStorage=UseDevelopmentStorage=true\n",
    )
    .expect("env file");
    let path = dir.join("strava-latest-run.service");
    std::fs::write(&path, unit).expect("unit");
    path
}

#[test]
fn the_systemd_unit_runs_standalone_hardened() {
    let unit = read("deploy/handler.service");
    let directives: Vec<(&str, &str)> = unit
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let value = |key: &str| -> Vec<&str> {
        directives
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .collect()
    };
    assert!(
        value("ExecStart")
            .first()
            .is_some_and(|c| c.ends_with(" standalone")),
        "runs handler standalone"
    );
    for (key, expected) in [
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", ""),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("KillSignal", "SIGTERM"),
    ] {
        assert_eq!(value(key), vec![expected], "{key}");
    }
    // The port it listens on is the one port it may bind.
    let port = value("Environment")
        .into_iter()
        .find_map(|e| e.strip_prefix("PORT="))
        .expect("PORT set");
    assert_eq!(
        value("SocketBindAllow"),
        vec![format!("tcp:{port}").as_str()]
    );
    assert_eq!(value("SocketBindDeny"), vec!["any"]);

    // systemd's own check, where systemd is installed.
    let analyze = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output();
    if analyze
        .as_ref()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        println!("skipped systemd-analyze verify: systemd-analyze is not installed here");
        return;
    }
    let dir = std::env::temp_dir().join(format!("unit-{}", std::process::id()));
    let path = unit_for_this_machine(&dir);
    let verify = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze verify");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(verify.status.success(), "systemd-analyze verify: {said}");
    // It exits 0 on unknown or misspelt keys, and says so: nothing may be said.
    assert!(said.trim().is_empty(), "systemd-analyze verify: {said}");

    // systemd's exposure score (offline mode: systemd 250 and later).
    let security = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path)
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&security.stdout).into_owned();
    match text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for "))
        .and_then(|(_, rest)| rest.split(": ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|score| score.parse::<f64>().ok())
    {
        Some(score) => assert!(score <= 2.0, "exposure {score} (0 best, 10 worst):\n{text}"),
        None => println!(
            "skipped the exposure score: this systemd-analyze has no offline security check ({})",
            String::from_utf8_lossy(&security.stderr).trim()
        ),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `*` in a .funcignore pattern matches any run of characters.
fn glob_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head)
                && (0..=name.len() - head.len()).any(|skip| {
                    name.get(head.len() + skip..)
                        .is_some_and(|rest| glob_matches(tail, rest))
                })
        }
    }
}

#[test]
fn funcignore_keeps_everything_but_host_json_the_handler_and_the_functions_out() {
    let patterns: Vec<String> = read(".funcignore")
        .lines()
        .map(|l| l.trim().trim_end_matches('/').to_owned())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(
        patterns
            .iter()
            .all(|p| !p.contains('/') && !p.starts_with('!')),
        "top-level names only: {patterns:?}"
    );
    let ignored = |name: &str| patterns.iter().any(|p| glob_matches(p, name));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut kept = BTreeSet::new();
    for entry in std::fs::read_dir(root).expect("the repository") {
        let entry = entry.expect("an entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == ".git" || ignored(&name) {
            continue;
        }
        let is_function = entry.path().join("function.json").is_file();
        assert!(
            name == "host.json" || name == "handler" || is_function,
            "{name} would be uploaded by func azure functionapp publish: add it to .funcignore"
        );
        kept.insert(name);
    }
    for name in [
        "host.json",
        "GetLatestRun",
        "GetRunningYear",
        "RefreshToken",
        "StravaWebhook",
        "Widget",
        "handler",
    ] {
        assert!(!ignored(name), "{name} must be uploaded");
        assert!(
            !ignored(&name.to_lowercase()),
            "{name} must be uploaded from case-insensitive file systems too"
        );
    }
    assert!(kept.contains("host.json"), "{kept:?}");
}

#[test]
fn the_webhook_route_takes_the_callback_secret_as_an_optional_segment() {
    let function: Value =
        serde_json::from_str(&read("StravaWebhook/function.json")).expect("function.json");
    let trigger = &function["bindings"][0];
    assert_eq!(trigger["type"], "httpTrigger");
    // Optional: a subscription made before callbacks carried a secret posts to the bare path.
    assert_eq!(trigger["route"], "StravaWebhook/{secret?}", "{function}");
    assert_eq!(trigger["authLevel"], "anonymous");
}
