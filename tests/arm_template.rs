//! The Managed Application's ARM template, checked without Azure: every expression resolves, the
//! app settings match what the binary reads, and the security properties hold.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use clap::{Args, FromArgMatches};
use common::arm::{Evaluator, Val, key_of};
use common::cosmos_emulator::Emulator;
use serde_json::{Value, json};
use teams_presence::config::{Config, RawSettings, StoreSettings};
use teams_presence::spans::COSMOS_DB_SYSTEM;
use teams_presence::telemetry::SERVICE_NAME;
use teams_presence::telemetry::run_metrics::{FIGURE_PREFIX, FIGURES, FailedStage, RUNS};

const GROUP_A: &str = "11111111-1111-4111-8111-111111111111";
const GROUP_B: &str = "22222222-2222-4222-8222-222222222222";

fn read_json(path: &str) -> Value {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", full.display()))
}

fn template() -> Value {
    read_json("arm/mainTemplate.json")
}

/// Values an admin would give the parameters without defaults.
fn sample_parameters() -> BTreeMap<String, Value> {
    BTreeMap::from([
        ("entraGroupIds".to_string(), json!(format!("{GROUP_A},{GROUP_B}"))),
        ("alertEmail".to_string(), json!("ops@contoso.example")),
        ("packageUri".to_string(), json!("https://releases.contoso.example/function-package.zip")),
        ("retentionDays".to_string(), json!(30)),
    ])
}

fn resources_of<'a>(template: &'a Value, ty: &str) -> Vec<&'a Value> {
    template["resources"].as_array().unwrap().iter().filter(|r| r["type"] == ty).collect()
}

fn one_of<'a>(template: &'a Value, ty: &str) -> &'a Value {
    let found = resources_of(template, ty);
    assert_eq!(found.len(), 1, "expected exactly one {ty}");
    found[0]
}

/// The Function App's app settings, evaluated: name -> value.
fn app_settings(eval: &Evaluator, template: &Value) -> BTreeMap<String, Val> {
    let site = one_of(template, "Microsoft.Web/sites");
    site["properties"]["siteConfig"]["appSettings"]
        .as_array()
        .expect("appSettings is an array")
        .iter()
        .map(|s| {
            let name = s["name"].as_str().expect("setting name").to_string();
            let value = eval.eval_value(&s["value"], &name);
            (name, value)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Expressions

#[test]
fn every_expression_resolves_to_declared_parameters_variables_and_resources() {
    let template = template();
    let eval = Evaluator::new(&template, sample_parameters());
    eval.check_all();
    assert_eq!(eval.errors(), Vec::<String>::new());
    // Guards against a walker that silently visits nothing.
    assert!(eval.expressions_evaluated() > 80, "only {} expressions evaluated", eval.expressions_evaluated());
}

#[test]
fn every_declared_parameter_and_variable_is_used() {
    let template = template();
    let text = template.to_string();
    for section in ["parameters", "variables"] {
        for name in template[section].as_object().unwrap().keys() {
            let use_site = format!("{section}('{name}')");
            assert!(text.contains(&use_site), "{section} {name} is declared but never used");
        }
    }
}

/// Each broken copy of the template must be caught, with a message naming the culprit.
#[test]
fn the_scanner_reports_dangling_references() {
    let original = template().to_string();
    let cases = [
        ("parameters('retentionDays')", "parameters('retentionDay')", "parameters('retentionDay') is not declared"),
        ("variables('planName')", "variables('planNme')", "variables('planNme') is not declared"),
        (
            "resourceId('Microsoft.Web/serverfarms'",
            "resourceId('Microsoft.Web/serverFarmz'",
            "Microsoft.Web/serverFarmz/plan-presence-",
        ),
        (
            "reference(variables('cosmosAccountId'), '2024-05-15').documentEndpoint",
            "reference(resourceId('Microsoft.DocumentDB/databaseAccounts', 'elsewhere'), '2024-05-15').documentEndpoint",
            "databaseAccounts/elsewhere, which the template does not declare",
        ),
        (
            "\"[resourceId('Microsoft.Web/sites', variables('functionAppName'))]\"\n",
            "\"[resourceId('Microsoft.Web/sites', 'another-app')]\"\n",
            "another-app",
        ),
        (
            "\"Authorization=AAD\"",
            "\"[listKeys(variables('storageAccountId'), '2024-01-01').keys[0].value]\"",
            "listKeys() returns keys",
        ),
        ("[string(parameters('retentionDays'))]", "[strng(parameters('retentionDays'))]", "function strng()"),
        ("[variables('logLevel')]", "[variables('logLevel']", "cannot parse"),
        // Expressions nested in a variable's object (the workbook content) are checked too.
        (
            "\"fallbackResourceIds\":[\"[variables('appInsightsId')]\"]",
            "\"fallbackResourceIds\":[\"[variables('appInsightId')]\"]",
            "variables('appInsightId') is not declared",
        ),
        (
            "[string(variables('opsWorkbook'))]",
            "[string(variables('opsWorkbooks'))]",
            "variables('opsWorkbooks') is not declared",
        ),
    ];
    for (from, to, expected) in cases {
        // The JSON is re-serialised compactly, so match on the compact form.
        let from_compact = from.replace('\n', "");
        let to_compact = to.replace('\n', "");
        assert!(original.contains(&from_compact), "test case does not apply: {from_compact}");
        let broken: Value = serde_json::from_str(&original.replacen(&from_compact, &to_compact, 1)).unwrap();
        let eval = Evaluator::new(&broken, sample_parameters());
        eval.check_all();
        let errors = eval.errors().join("\n");
        assert!(
            errors.contains(expected),
            "replacing {from_compact} with {to_compact}: expected {expected:?} in:\n{errors}"
        );
    }
}

#[test]
fn a_missing_required_parameter_is_reported() {
    let template = template();
    let mut params = sample_parameters();
    params.remove("entraGroupIds");
    let eval = Evaluator::new(&template, params);
    eval.check_all();
    assert!(eval.errors().iter().any(|e| e.contains("parameter entraGroupIds has no value")), "{:?}", eval.errors());
}

// ---------------------------------------------------------------------------------------------
// App settings against the binary

/// Settings the binary reads that the template must not set, each with the reason.
const LOCAL_ONLY: &[(&str, &str)] = &[
    ("COSMOS_KEY", "account key of a Cosmos DB emulator; deployments authenticate with the managed identity"),
    ("PRESENCE_DB", "SQLite file of the embedded store, used only when COSMOS_ENDPOINT is unset"),
    ("AZURE_CLIENT_ID", "developer credentials for local runs; in Azure the managed identity is used"),
    ("AZURE_TENANT_ID", "developer credentials for local runs"),
    ("AZURE_CLIENT_SECRET", "developer credentials for local runs; never in a deployment"),
];

/// Optional settings an admin adds after installation, never the template (which holds no
/// secrets), each with the reason.
const ADDED_BY_THE_ADMIN: &[(&str, &str)] = &[(
    "USER_ID_PSEUDONYM_KEY",
    "optional pseudonym mode: a secret key, best added as a Key Vault reference (docs/data-handling.md)",
)];

/// Settings the binary reads that the platform or the Functions host sets, each with the reason.
const SET_BY_PLATFORM: &[(&str, &str)] = &[
    ("FUNCTIONS_CUSTOMHANDLER_PORT", "the Functions host picks the port and passes it to the handler"),
    ("FUNCTIONS_HTTPWORKER_PORT", "legacy name of the same port, set by the host"),
    ("IDENTITY_ENDPOINT", "the managed identity token endpoint, set by App Service / Functions"),
    ("IDENTITY_HEADER", "the managed identity endpoint's SSRF header, set and rotated by the platform"),
];

/// Settings the template sets for the host or the platform rather than the binary, with reasons.
const FOR_HOST_OR_PLATFORM: &[(&str, &str)] = &[
    (
        "AzureWebJobsStorage__accountName",
        "the host's own storage (timer schedule status, singleton lease) through the managed identity",
    ),
    (
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "the host sends its request and log telemetry to Application Insights; the handler's exporter \
         reads it too, through telemetry::settings::CONNECTION_STRING_ENV",
    ),
    (
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        "makes the host and the handler's exporter authenticate to Application Insights with Entra ID \
         (local auth is off)",
    ),
];

/// Environment variables the binary reads: every clap `env = ...` of `RawSettings`, plus every
/// `env::var("...")` literal in `src/` (such as LOG_LEVEL, read when logging starts).
fn settings_the_binary_reads() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = RawSettings::augment_args(clap::Command::new("x"))
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    let clap_count = names.len();
    assert!(clap_count >= 10, "only {clap_count} clap settings found");
    for file in rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, _) in text.match_indices("env::var(\"") {
            let rest = &text[i + "env::var(\"".len()..];
            names.insert(rest[..rest.find('"').unwrap()].to_string());
        }
    }
    // A list literal fed to env::var, like the port names in main.rs.
    let main = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/main.rs")).unwrap();
    for (name, _) in SET_BY_PLATFORM {
        if main.contains(&format!("\"{name}\"")) {
            names.insert(name.to_string());
        }
    }
    names
}

fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

#[test]
fn the_template_sets_exactly_the_settings_the_binary_reads() {
    let template = template();
    let eval = Evaluator::new(&template, sample_parameters());
    let set: BTreeSet<String> = app_settings(&eval, &template).into_keys().collect();
    let read = settings_the_binary_reads();
    assert!(read.contains("LOG_LEVEL"), "the source scan found no env::var literal: {read:?}");

    let excused: BTreeSet<&str> =
        LOCAL_ONLY.iter().chain(SET_BY_PLATFORM).chain(ADDED_BY_THE_ADMIN).map(|(n, _)| *n).collect();
    let missing: Vec<&String> = read.iter().filter(|n| !set.contains(*n) && !excused.contains(n.as_str())).collect();
    assert!(missing.is_empty(), "the binary reads these settings but the template does not set them: {missing:?}");

    let host: BTreeSet<&str> = FOR_HOST_OR_PLATFORM.iter().map(|(n, _)| *n).collect();
    let unread: Vec<&String> = set.iter().filter(|n| !read.contains(*n) && !host.contains(n.as_str())).collect();
    assert!(unread.is_empty(), "the template sets settings nothing reads: {unread:?}");

    for (name, _) in LOCAL_ONLY.iter().chain(ADDED_BY_THE_ADMIN) {
        assert!(!set.contains(*name), "{name} is local-only and must not be set by the template");
    }
    // The store's local-only settings come from clap: if they vanish, this list is stale.
    for name in ["COSMOS_KEY", "PRESENCE_DB"] {
        assert!(read.contains(name), "{name} is listed as local-only but the binary no longer reads it");
    }
    let lists = [LOCAL_ONLY, SET_BY_PLATFORM, FOR_HOST_OR_PLATFORM, ADDED_BY_THE_ADMIN];
    let all: Vec<&str> = lists.iter().flat_map(|l| l.iter().map(|(n, _)| *n)).collect();
    let distinct: BTreeSet<&str> = all.iter().copied().collect();
    assert_eq!(all.len(), distinct.len(), "a setting is in two lists: {all:?}");
}

/// Feeds the template's settings to the binary's own parser, as flags derived from clap's env
/// names, with the deployment-time values stood in by what Azure would give.
#[test]
fn the_settings_parse_into_a_cosmos_configuration_matching_the_template() {
    let template = template();
    let eval = Evaluator::new(&template, sample_parameters());
    let settings = app_settings(&eval, &template);
    let command = RawSettings::augment_args(clap::Command::new("x").no_binary_name(true));
    let mut argv = Vec::new();
    for arg in command.get_arguments() {
        let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else { continue };
        let Some(value) = settings.get(env.to_string_lossy().as_ref()) else { continue };
        let value = match value {
            Val::Runtime(r)
                if r.contains("microsoft.documentdb/databaseaccounts") && r.ends_with(".documentEndpoint") =>
            {
                "https://cosmos-presence-x.documents.azure.com:443/".to_string()
            }
            Val::Runtime(r) => panic!("{env:?} has a deployment-time value the test cannot stand in for: {r}"),
            known => known.render(),
        };
        argv.push(format!("--{long}={value}"));
    }
    let matches = command.try_get_matches_from(&argv).expect("the settings are valid flags");
    let raw = RawSettings::from_arg_matches(&matches).unwrap();
    let config = Config::parse(&raw).unwrap_or_else(|e| panic!("the template's settings are rejected: {e}"));

    assert_eq!(config.groups.iter().map(|g| g.to_string()).collect::<Vec<_>>(), [GROUP_A, GROUP_B]);
    assert_eq!(config.retention_days, 30, "RETENTION_DAYS follows the retentionDays parameter");
    let StoreSettings::Cosmos(cosmos) = &config.store else { panic!("expected Cosmos DB, got {:?}", config.store) };
    assert!(cosmos.key.is_none(), "no key: the managed identity authenticates");

    let container_ids: Vec<String> =
        resources_of(&template, "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers")
            .iter()
            .map(|c| eval.eval_value(&c["properties"]["resource"]["id"], "container id").render())
            .collect();
    let database = one_of(&template, "Microsoft.DocumentDB/databaseAccounts/sqlDatabases");
    assert_eq!(eval.eval_value(&database["properties"]["resource"]["id"], "db").render(), cosmos.database);
    assert!(container_ids.contains(&cosmos.container), "{} not in {container_ids:?}", cosmos.container);
    assert!(container_ids.contains(&cosmos.state_container), "{} not in {container_ids:?}", cosmos.state_container);

    // The run must stop before the host's functionTimeout, or the host restarts the handler.
    let host = read_json("host.json");
    let timeout = host["functionTimeout"].as_str().unwrap();
    let parts: Vec<u64> = timeout.split(':').map(|p| p.parse().unwrap()).collect();
    let timeout_secs = parts[0] * 3600 + parts[1] * 60 + parts[2];
    assert!(
        config.run_deadline.as_secs() + 15 <= timeout_secs,
        "deadline {:?} vs functionTimeout {timeout}",
        config.run_deadline
    );

    // function.json reads the schedule from the POLL_SCHEDULE setting.
    let function = read_json("function-timer/function.json");
    assert_eq!(function["bindings"][0]["schedule"], "%POLL_SCHEDULE%");
    assert_eq!(config.schedule, "0 */5 * * * *");
}

// ---------------------------------------------------------------------------------------------
// Security properties

#[test]
fn no_secret_is_created_stored_or_asked_for() {
    let template = template();
    for (name, spec) in template["parameters"].as_object().unwrap() {
        let ty = spec["type"].as_str().unwrap().to_ascii_lowercase();
        assert!(!ty.starts_with("secure"), "parameter {name} is a secret; the design needs none");
    }
    let eval = Evaluator::new(&template, sample_parameters());
    for (name, value) in app_settings(&eval, &template) {
        let text = value.render();
        for marker in ["AccountKey=", "SharedAccessSignature", "sig=", "InstrumentationKey=", "Password"] {
            assert!(!text.contains(marker), "{name} carries a secret ({marker}): {text}");
        }
        assert!(!name.contains("KEY") && !name.contains("SECRET"), "{name} looks like a secret setting");
    }
}

#[test]
fn storage_allows_only_entra_authenticated_https_with_tls_1_2() {
    let template = template();
    let storage = one_of(&template, "Microsoft.Storage/storageAccounts");
    let p = &storage["properties"];
    assert_eq!(p["allowSharedKeyAccess"], false);
    assert_eq!(p["supportsHttpsTrafficOnly"], true);
    assert_eq!(p["minimumTlsVersion"], "TLS1_2");
    assert_eq!(p["allowBlobPublicAccess"], false);
    assert_eq!(p["defaultToOAuthAuthentication"], true);
    let container = one_of(&template, "Microsoft.Storage/storageAccounts/blobServices/containers");
    assert_eq!(container["properties"]["publicAccess"], "None");
}

#[test]
fn cosmos_is_serverless_entra_only_tls_1_2_in_the_deployment_region() {
    let template = template();
    let account = one_of(&template, "Microsoft.DocumentDB/databaseAccounts");
    let p = &account["properties"];
    assert_eq!(p["disableLocalAuth"], true);
    assert_eq!(p["disableKeyBasedMetadataWriteAccess"], true);
    assert_eq!(p["minimalTlsVersion"], "Tls12");
    assert_eq!(p["capabilities"], json!([{ "name": "EnableServerless" }]));
    assert_eq!(account["location"], "[parameters('location')]");
    assert_eq!(p["locations"].as_array().unwrap().len(), 1);
    assert_eq!(p["locations"][0]["locationName"], "[parameters('location')]");
    // Serverless accounts reject provisioned throughput.
    let text = template.to_string();
    assert!(!text.contains("throughput"), "no throughput options on a serverless account");
}

/// The partition keys come from the emulator the store tests run against
/// (`tests/common/cosmos_emulator.rs`, used by store_contract, store_cosmos_faults, e2e_history),
/// which, like Cosmos DB, rejects a write whose document does not carry the request's partition
/// key at the container's path. The store addresses history documents by user id and state
/// documents (`head`, the shards) by their own id: a deployment partitioned any other way fails
/// every write.
#[tokio::test]
async fn cosmos_containers_match_the_code_with_ttl_and_minimal_indexing() {
    let template = template();
    let eval = Evaluator::new(&template, sample_parameters());
    let containers: BTreeMap<String, Value> =
        resources_of(&template, "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers")
            .into_iter()
            .map(|c| match eval.eval_value(&c["properties"]["resource"], "container") {
                Val::Json(v) => (v["id"].as_str().unwrap().to_string(), v),
                other => panic!("container resource is not static: {other:?}"),
            })
            .collect();
    let emulator = Emulator::new();
    let client = emulator.sdk_client(Vec::new()).await;
    for (name, container) in &containers {
        let properties = client
            .database_client(emulator.settings.database.as_str())
            .container_client(name.as_str(), None)
            .await
            .unwrap_or_else(|e| panic!("the emulator has no container {name}: {e}"))
            .read(None)
            .await
            .unwrap()
            .into_model()
            .unwrap();
        let tested = serde_json::to_value(&properties).unwrap()["partitionKey"].clone();
        for field in ["paths", "kind", "version"] {
            assert_eq!(container["partitionKey"][field], tested[field], "{name}: partitionKey.{field}");
        }
    }

    let history = &containers[teams_presence::config::DEFAULT_COSMOS_CONTAINER];
    assert_eq!(history["partitionKey"]["paths"], json!(["/userId"]));
    assert_eq!(history["defaultTtl"], json!(30 * 86_400), "TTL follows retentionDays (30 in the sample)");
    assert_eq!(history["indexingPolicy"]["includedPaths"], json!([{ "path": "/timestamp/?" }]));
    assert_eq!(history["indexingPolicy"]["excludedPaths"], json!([{ "path": "/*" }]));

    let state = &containers[teams_presence::config::DEFAULT_COSMOS_STATE_CONTAINER];
    assert_eq!(state["partitionKey"]["paths"], json!(["/id"]));
    assert!(state.get("defaultTtl").is_none(), "last-known state must not expire");
    assert_eq!(state["indexingPolicy"]["includedPaths"], json!([]));
    assert_eq!(state["indexingPolicy"]["excludedPaths"], json!([{ "path": "/*" }]));
    assert_eq!(containers.len(), 2);
}

#[test]
fn the_function_app_is_flex_custom_https_only_tls_1_2_without_ftp_and_with_an_identity() {
    let template = template();
    let plan = one_of(&template, "Microsoft.Web/serverfarms");
    assert_eq!(plan["sku"], json!({ "tier": "FlexConsumption", "name": "FC1" }));
    assert_eq!(plan["properties"]["reserved"], true, "Linux");

    let site = one_of(&template, "Microsoft.Web/sites");
    assert_eq!(site["kind"], "functionapp,linux");
    assert_eq!(site["identity"], json!({ "type": "SystemAssigned" }));
    let p = &site["properties"];
    assert_eq!(p["httpsOnly"], true);
    assert_eq!(p["siteConfig"]["minTlsVersion"], "1.2");
    assert_eq!(p["siteConfig"]["scmMinTlsVersion"], "1.2");
    assert_eq!(p["siteConfig"]["ftpsState"], "Disabled");
    assert_eq!(p["functionAppConfig"]["runtime"], json!({ "name": "custom", "version": "1.0" }));
    assert_eq!(p["functionAppConfig"]["deployment"]["storage"]["authentication"]["type"], "SystemAssignedIdentity");

    let policies: BTreeMap<String, Value> =
        resources_of(&template, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
            .into_iter()
            .map(|r| (r["name"].as_str().unwrap().to_string(), r["properties"]["allow"].clone()))
            .collect();
    assert_eq!(policies.len(), 2, "{policies:?}");
    assert!(policies.iter().any(|(n, _)| n.contains("'ftp'")) && policies.iter().any(|(n, _)| n.contains("'scm'")));
    assert!(policies.values().all(|allow| allow == false), "basic (password) publishing must be off: {policies:?}");

    // Flex rejects the classic runtime settings; the runtime comes from functionAppConfig.
    let eval = Evaluator::new(&template, sample_parameters());
    let settings = app_settings(&eval, &template);
    for classic in ["FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE"] {
        assert!(!settings.contains_key(classic), "{classic} must not be set on Flex Consumption");
    }
    assert_eq!(settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"].render(), "Authorization=AAD");
}

#[test]
fn application_insights_takes_entra_authenticated_telemetry_only_into_the_capped_workspace() {
    let template = template();
    let ai = one_of(&template, "Microsoft.Insights/components");
    assert_eq!(ai["properties"]["DisableLocalAuth"], true);
    assert_eq!(ai["kind"], "web");
    let eval = Evaluator::new(&template, sample_parameters());
    let workspace_id = eval.eval_value(&ai["properties"]["WorkspaceResourceId"], "ws").render();
    assert!(key_of(&workspace_id).starts_with("microsoft.operationalinsights/workspaces|"), "{workspace_id}");
    let workspace = one_of(&template, "Microsoft.OperationalInsights/workspaces");
    assert_eq!(workspace["properties"]["workspaceCapping"]["dailyQuotaGb"], "[parameters('logAnalyticsDailyCapGb')]");
}

/// Built-in role definition ids, each with where it is documented.
const ROLES: &[(&str, &str, &str)] = &[
    (
        "Storage Blob Data Owner",
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
        "Azure-Samples/azure-functions-flex-consumption-samples IaC/bicep/rbac.bicep; learn.microsoft.com/azure/role-based-access-control/built-in-roles",
    ),
    (
        "Monitoring Metrics Publisher",
        "3913510d-42f4-4e42-8a64-420c390055eb",
        "learn.microsoft.com/azure/azure-monitor/app/azure-ad-authentication; built-in-roles",
    ),
    (
        "Cosmos DB Built-in Data Contributor",
        "00000000-0000-0000-0000-000000000002",
        "learn.microsoft.com/azure/cosmos-db/nosql/security/how-to-grant-data-plane-role-based-access",
    ),
];

fn role(name: &str) -> &'static str {
    ROLES.iter().find(|(n, _, _)| *n == name).map(|(_, id, _)| *id).unwrap()
}

#[test]
fn the_function_identity_gets_exactly_the_documented_roles_on_the_right_scopes() {
    let template = template();
    let eval = Evaluator::new(&template, sample_parameters());
    let site_principal = "<runtime:reference(microsoft.web/sites|presence-";

    let mut granted = BTreeSet::new();
    for assignment in resources_of(&template, "Microsoft.Authorization/roleAssignments") {
        let a = match eval.eval_value(assignment, "roleAssignment") {
            Val::Json(v) => v,
            other => panic!("{other:?}"),
        };
        let principal = a["properties"]["principalId"].as_str().unwrap();
        assert!(principal.starts_with(site_principal) && principal.ends_with(".identity.principalId>"), "{principal}");
        assert_eq!(a["properties"]["principalType"], "ServicePrincipal");
        let definition = a["properties"]["roleDefinitionId"].as_str().unwrap();
        assert!(
            definition.starts_with("/subscriptions/")
                && definition.contains("/providers/Microsoft.Authorization/roleDefinitions/")
        );
        let role_id = definition.rsplit('/').next().unwrap().to_string();
        let scope = a["scope"].as_str().unwrap().split('/').take(2).collect::<Vec<_>>().join("/");
        granted.insert((role_id, scope));
    }
    let expected = BTreeSet::from([
        (role("Storage Blob Data Owner").to_string(), "Microsoft.Storage/storageAccounts".to_string()),
        (role("Monitoring Metrics Publisher").to_string(), "Microsoft.Insights/components".to_string()),
    ]);
    assert_eq!(granted, expected);

    let sql = one_of(&template, "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments");
    let sql = match eval.eval_value(sql, "sqlRoleAssignment") {
        Val::Json(v) => v,
        other => panic!("{other:?}"),
    };
    let definition = sql["properties"]["roleDefinitionId"].as_str().unwrap();
    assert!(
        definition.ends_with(&format!("/sqlRoleDefinitions/{}", role("Cosmos DB Built-in Data Contributor"))),
        "{definition}"
    );
    assert!(sql["properties"]["principalId"].as_str().unwrap().starts_with(site_principal));
    let scope = sql["properties"]["scope"].as_str().unwrap();
    assert!(scope.ends_with("/dbs/presence"), "data access only to the app's database: {scope}");
}

// ---------------------------------------------------------------------------------------------
// API versions

/// The API version of each resource type, and where Microsoft documents or uses it.
const API_VERSIONS: &[(&str, &str, &str)] = &[
    (
        "Microsoft.Insights/scheduledQueryRules",
        "2021-08-01",
        "learn.microsoft.com/azure/templates/microsoft.insights/2021-08-01/scheduledqueryrules",
    ),
    (
        "Microsoft.Resources/deployments",
        "2020-06-01",
        "learn.microsoft.com/partner-center/marketplace-offers/azure-partner-customer-usage-attribution (pid- sample)",
    ),
    (
        "Microsoft.OperationalInsights/workspaces",
        "2025-02-01",
        "Azure-Samples/azure-functions-flex-consumption-samples IaC/armtemplate/azuredeploy.json",
    ),
    (
        "Microsoft.Insights/components",
        "2020-02-02",
        "Azure-Samples/azure-functions-flex-consumption-samples IaC/armtemplate/azuredeploy.json",
    ),
    (
        "Microsoft.Insights/workbooks",
        "2022-04-01",
        "learn.microsoft.com/azure/templates/microsoft.insights/2022-04-01/workbooks",
    ),
    (
        "Microsoft.Insights/actionGroups",
        "2021-09-01",
        "learn.microsoft.com/azure/azure-monitor/alerts/resource-manager-action-groups",
    ),
    (
        "Microsoft.Storage/storageAccounts",
        "2024-01-01",
        "Azure-Samples/azure-functions-flex-consumption-samples IaC/armtemplate/azuredeploy.json",
    ),
    (
        "Microsoft.Storage/storageAccounts/blobServices",
        "2024-01-01",
        "Azure-Samples/azure-functions-flex-consumption-samples IaC/armtemplate/azuredeploy.json",
    ),
    (
        "Microsoft.Storage/storageAccounts/blobServices/containers",
        "2024-01-01",
        "Azure-Samples/azure-functions-flex-consumption-samples IaC/armtemplate/azuredeploy.json",
    ),
    (
        "Microsoft.DocumentDB/databaseAccounts",
        "2024-05-15",
        "learn.microsoft.com/azure/templates/microsoft.documentdb/2024-05-15/databaseaccounts",
    ),
    (
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases",
        "2024-05-15",
        "learn.microsoft.com/azure/templates/microsoft.documentdb/2024-05-15/databaseaccounts/sqldatabases",
    ),
    (
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers",
        "2024-05-15",
        "learn.microsoft.com/azure/templates/microsoft.documentdb/2024-05-15/databaseaccounts/sqldatabases/containers",
    ),
    (
        "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments",
        "2024-05-15",
        "learn.microsoft.com/azure/templates/microsoft.documentdb/2024-05-15/databaseaccounts/sqlroleassignments",
    ),
    (
        "Microsoft.Web/serverfarms",
        "2024-04-01",
        "Azure-Samples/azure-functions-flex-consumption-samples IaC/armtemplate/azuredeploy.json",
    ),
    (
        "Microsoft.Web/sites",
        "2024-04-01",
        "Azure-Samples/azure-functions-flex-consumption-samples IaC/armtemplate/azuredeploy.json",
    ),
    (
        "Microsoft.Web/sites/basicPublishingCredentialsPolicies",
        "2024-04-01",
        "learn.microsoft.com/azure/templates/microsoft.web/2024-04-01/sites/basicpublishingcredentialspolicies-ftp",
    ),
    (
        "Microsoft.Web/sites/extensions",
        "2024-04-01",
        "learn.microsoft.com/azure/azure-functions/functions-infrastructure-as-code (zip deploy extension sample)",
    ),
    (
        "Microsoft.Authorization/roleAssignments",
        "2022-04-01",
        "Azure-Samples/azure-functions-flex-consumption-samples IaC/armtemplate/azuredeploy.json",
    ),
];

fn api_version_of(ty: &str) -> Option<&'static str> {
    API_VERSIONS.iter().find(|(t, _, _)| t.eq_ignore_ascii_case(ty)).map(|(_, v, _)| *v)
}

#[test]
fn every_api_version_is_a_documented_one() {
    let template = template();
    for resource in template["resources"].as_array().unwrap() {
        let ty = resource["type"].as_str().unwrap();
        let version = resource["apiVersion"].as_str().unwrap();
        assert_eq!(api_version_of(ty), Some(version), "{ty}@{version} is not in the documented list");
    }
    // reference(id, 'version') must use the version of the referenced type.
    let text = template.to_string();
    for (i, _) in text.match_indices("reference(variables('") {
        let rest = &text[i + "reference(variables('".len()..];
        let var = &rest[..rest.find('\'').unwrap()];
        let after = &rest[rest.find("), '").unwrap() + 4..];
        let version = &after[..after.find('\'').unwrap()];
        let target = template["variables"][var].as_str().unwrap();
        let ty = target.split('\'').nth(1).unwrap();
        assert_eq!(api_version_of(ty), Some(version), "reference({var}) uses {version} for {ty}");
    }
}

// ---------------------------------------------------------------------------------------------
// Code deployment, attribution, outputs

#[test]
fn code_is_deployed_from_the_package_parameter_after_storage_access_is_granted() {
    let template = template();
    let onedeploy = one_of(&template, "Microsoft.Web/sites/extensions");
    assert!(onedeploy["name"].as_str().unwrap().contains("'onedeploy'"));
    assert_eq!(onedeploy["properties"]["packageUri"], "[parameters('packageUri')]");
    assert_eq!(onedeploy["properties"]["remoteBuild"], false);
    let depends: Vec<String> =
        onedeploy["dependsOn"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_string()).collect();
    assert!(
        depends
            .iter()
            .any(|d| d.contains("Microsoft.Authorization/roleAssignments") && d.contains("storageBlobDataOwner"))
    );

    let pid = one_of(&template, "Microsoft.Resources/deployments");
    let name = pid["name"].as_str().unwrap();
    let guid = name.strip_prefix("pid-").expect("attribution deployment is named pid-<GUID>");
    uuid::Uuid::parse_str(guid).expect("pid- is followed by a GUID");
    assert_eq!(pid["properties"]["template"]["resources"], json!([]));
}

#[test]
fn outputs_give_the_function_app_name_and_its_identity() {
    let template = template();
    let eval = Evaluator::new(&template, sample_parameters());
    let outputs = template["outputs"].as_object().unwrap();
    let name = eval.eval_value(&outputs["functionAppName"]["value"], "out").render();
    assert!(name.starts_with("presence-") && name.len() == "presence-".len() + 13, "{name}");
    let principal = eval.eval_value(&outputs["principalId"]["value"], "out").render();
    assert_eq!(principal, format!("<runtime:reference(microsoft.web/sites|{name}).identity.principalId>"));
}

#[test]
fn generated_names_fit_azure_limits() {
    let template = template();
    let eval = Evaluator::new(&template, sample_parameters());
    let storage = eval.variable("storageAccountName").render();
    assert!(
        (3..=24).contains(&storage.len()) && storage.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "{storage}"
    );
    let cosmos = eval.variable("cosmosAccountName").render();
    assert!((3..=44).contains(&cosmos.len()), "{cosmos}");
    let site = eval.variable("functionAppName").render();
    assert!(site.len() <= 60, "{site}");
}

// ---------------------------------------------------------------------------------------------
// Monitoring: the action group, the four alert rules and the ops workbook

/// What an alert rule's query watches.
enum Watches {
    /// The host's `requests` rows of the timer function, successful or failed.
    Runs { success: bool },
    /// One of the handler's per-run figures (`customMetrics`).
    Figure(&'static str),
}

struct Alert {
    name: &'static str,
    severity: i64,
    every: &'static str,
    window: &'static str,
    aggregation: &'static str,
    operator: &'static str,
    threshold: i64,
    watches: Watches,
}

/// The alert rules the template must deploy; docs/operations.md explains each.
const ALERTS: &[Alert] = &[
    Alert {
        name: "Teams Presence: no successful run for 15 minutes",
        severity: 1,
        every: "PT5M",
        window: "PT15M",
        aggregation: "Total",
        operator: "LessThan",
        threshold: 1,
        watches: Watches::Runs { success: true },
    },
    Alert {
        name: "Teams Presence: failed runs",
        severity: 2,
        every: "PT5M",
        window: "PT30M",
        aggregation: "Count",
        operator: "GreaterThanOrEqual",
        threshold: 2,
        watches: Watches::Runs { success: false },
    },
    Alert {
        name: "Teams Presence: sustained Graph throttling",
        severity: 2,
        every: "PT15M",
        window: "PT1H",
        aggregation: "Count",
        operator: "GreaterThanOrEqual",
        threshold: 6,
        watches: Watches::Figure("presence.run.throttled"),
    },
    Alert {
        name: "Teams Presence: groups that could not be read",
        severity: 2,
        every: "PT15M",
        window: "PT30M",
        aggregation: "Count",
        operator: "GreaterThan",
        threshold: 0,
        watches: Watches::Figure("presence.run.unreadable_groups"),
    },
];

/// A value that must be known before deployment.
fn evaluated(eval: &Evaluator, value: &Value, at: &str) -> Value {
    match eval.eval_value(value, at) {
        Val::Json(v) => v,
        other => panic!("{at} is not known before deployment: {other:?}"),
    }
}

/// The alert rules, evaluated, by display name.
fn alert_rules(eval: &Evaluator, template: &Value) -> BTreeMap<String, Value> {
    resources_of(template, "Microsoft.Insights/scheduledQueryRules")
        .into_iter()
        .map(|r| {
            let rule = evaluated(eval, r, "alert rule");
            (rule["properties"]["displayName"].as_str().expect("displayName").to_string(), rule)
        })
        .collect()
}

/// The workbook content as deployed: the evaluated `serializedData`, parsed.
fn workbook_content(eval: &Evaluator, template: &Value) -> Value {
    let workbook = evaluated(eval, one_of(template, "Microsoft.Insights/workbooks"), "workbook");
    let data = workbook["properties"]["serializedData"].as_str().expect("serializedData is a string");
    serde_json::from_str(data).unwrap_or_else(|e| panic!("serializedData is not JSON: {e}"))
}

/// The workbook's query tiles: name -> query.
fn workbook_queries(content: &Value) -> BTreeMap<String, String> {
    content["items"]
        .as_array()
        .expect("workbook items")
        .iter()
        .filter(|item| item["type"] == 3)
        .map(|item| {
            let name = item["name"].as_str().expect("tile name").to_string();
            let query = item["content"]["query"].as_str().unwrap_or_else(|| panic!("tile {name} has no query"));
            (name, query.to_string())
        })
        .collect()
}

/// Every query of the alert rules and the workbook: (where, query).
fn monitoring_queries(eval: &Evaluator, template: &Value) -> Vec<(String, String)> {
    let mut queries: Vec<(String, String)> = alert_rules(eval, template)
        .into_iter()
        .map(|(name, rule)| (name, rule["properties"]["criteria"]["allOf"][0]["query"].as_str().unwrap().to_string()))
        .collect();
    let tiles = workbook_queries(&workbook_content(eval, template));
    queries.extend(tiles.into_iter().map(|(name, query)| (format!("workbook tile {name}"), query)));
    queries
}

/// The quoted strings right after `pattern`, such as the `x` of `name == "x"`.
fn quoted_after<'q>(query: &'q str, pattern: &str) -> Vec<&'q str> {
    query
        .match_indices(pattern)
        .filter_map(|(i, _)| {
            let rest = query[i + pattern.len()..].trim_start().strip_prefix('"')?;
            Some(&rest[..rest.find('"')?])
        })
        .collect()
}

/// The quoted items of the list after `pattern`, such as `type in ("a", "b")`.
fn list_after<'q>(query: &'q str, pattern: &str) -> Vec<&'q str> {
    query
        .match_indices(pattern)
        .flat_map(|(i, _)| {
            let rest = &query[i + pattern.len()..];
            rest[..rest.find(')').unwrap()].split(',').map(|item| item.trim().trim_matches('"'))
        })
        .collect()
}

/// Every quoted `presence.` name in a query.
fn metric_names(query: &str) -> Vec<&str> {
    query
        .match_indices("\"presence.")
        .map(|(i, _)| {
            let rest = &query[i + 1..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect()
}

/// The `function-*` folders, one per function of the app.
fn function_folders() -> BTreeSet<String> {
    std::fs::read_dir(env!("CARGO_MANIFEST_DIR"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("function-"))
        .collect()
}

#[test]
fn the_four_alerts_mail_the_alert_email_through_the_action_group() {
    let template = template();
    let eval = Evaluator::new(&template, sample_parameters());
    let group = one_of(&template, "Microsoft.Insights/actionGroups");
    let receivers = group["properties"]["emailReceivers"].as_array().unwrap();
    assert_eq!(receivers.len(), 1, "{receivers:?}");
    assert_eq!(receivers[0]["emailAddress"], "[parameters('alertEmail')]");
    assert_eq!(group["properties"]["enabled"], true);
    let group_key = common::arm::key("Microsoft.Insights/actionGroups", &eval.eval_value(&group["name"], "g").render());

    let rules = alert_rules(&eval, &template);
    let names: BTreeSet<&str> = rules.keys().map(String::as_str).collect();
    assert_eq!(names, ALERTS.iter().map(|a| a.name).collect::<BTreeSet<_>>());
    let timer = eval.variable("timerFunctionName").render();
    assert!(function_folders().contains(&timer), "no folder {timer} in {:?}", function_folders());

    for alert in ALERTS {
        let name = alert.name;
        let rule = &rules[name];
        assert_eq!(rule["kind"], "LogAlert", "{name}");
        let p = &rule["properties"];
        assert_eq!((&p["enabled"], &p["autoMitigate"]), (&json!(true), &json!(true)), "{name}");
        let scopes = p["scopes"].as_array().unwrap();
        assert_eq!(scopes.len(), 1, "{name}");
        assert!(key_of(scopes[0].as_str().unwrap()).starts_with("microsoft.insights/components|"), "{name}");
        let groups = p["actions"]["actionGroups"].as_array().unwrap();
        assert_eq!(groups.len(), 1, "{name}: {groups:?}");
        assert_eq!(key_of(groups[0].as_str().unwrap()), group_key, "{name} must mail alertEmail");

        let conditions = p["criteria"]["allOf"].as_array().unwrap();
        assert_eq!(conditions.len(), 1, "{name}");
        let c = &conditions[0];
        assert_eq!(
            [&p["severity"], &p["evaluationFrequency"], &p["windowSize"]],
            [&json!(alert.severity), &json!(alert.every), &json!(alert.window)],
            "{name}: severity, evaluation frequency, window"
        );
        assert_eq!(
            [&c["timeAggregation"], &c["operator"], &c["threshold"]],
            [&json!(alert.aggregation), &json!(alert.operator), &json!(alert.threshold)],
            "{name}: aggregation, operator, threshold"
        );
        let query = c["query"].as_str().unwrap();
        match alert.aggregation {
            // The service counts the rows itself; a count in the query would always be 1 row.
            "Count" => {
                assert!(c.get("metricMeasureColumn").is_none(), "{name}");
                assert!(!query.contains("summarize"), "{name}: {query}");
            }
            _ => {
                let column = c["metricMeasureColumn"].as_str().unwrap_or_else(|| panic!("{name}: no measure column"));
                assert!(query.contains(&format!("summarize {column} =")), "{name}: {query} does not make {column}");
            }
        }
        match alert.watches {
            Watches::Runs { success } => {
                assert!(query.starts_with("requests |"), "{name}: {query}");
                assert_eq!(quoted_after(query, "name =="), [timer.as_str()], "{name}: {query}");
                assert!(query.contains(&format!("success == {success}")), "{name}: {query}");
            }
            Watches::Figure(metric) => {
                assert!(query.starts_with("customMetrics |"), "{name}: {query}");
                assert_eq!(metric_names(query), [metric], "{name}: {query}");
                assert!(FIGURES.iter().any(|f| f.name == metric), "{name}: {metric} is not a figure the handler emits");
            }
        }
        let depends: Vec<String> =
            rule["dependsOn"].as_array().unwrap().iter().map(|d| key_of(d.as_str().unwrap())).collect();
        assert!(depends.contains(&group_key), "{name} must be created after its action group: {depends:?}");
    }
}

#[test]
fn the_ops_workbook_charts_duration_users_changes_throttling_and_failures_over_time() {
    let template = template();
    let eval = Evaluator::new(&template, sample_parameters());
    let resource = evaluated(&eval, one_of(&template, "Microsoft.Insights/workbooks"), "workbook");
    uuid::Uuid::parse_str(resource["name"].as_str().unwrap()).expect("a workbook's name is a GUID");
    assert_eq!(resource["kind"], "shared");
    let p = &resource["properties"];
    assert_eq!(p["displayName"], "Teams Presence operations");
    assert_eq!(p["category"], "workbook");
    let source = p["sourceId"].as_str().unwrap();
    assert!(key_of(source).starts_with("microsoft.insights/components|"), "{source}");

    let content = workbook_content(&eval, &template);
    assert_eq!(content["version"], p["version"]);
    assert_eq!(content["version"], "Notebook/1.0");
    assert_eq!(content["fallbackResourceIds"], json!([source]));
    for item in content["items"].as_array().unwrap().iter().filter(|i| i["type"] == 3) {
        assert_eq!(item["content"]["timeContextFromParameter"], "TimeRange", "{}", item["name"]);
    }

    let tiles = workbook_queries(&content);
    // The tile, and the table or metric it must chart over time.
    let charts = [
        ("runs", "requests"),
        ("duration", "presence.run.duration"),
        ("users", "presence.run.users_in_scope"),
        ("changes", "presence.run.changes"),
        ("throttling", "presence.run.throttled"),
        ("failures", RUNS),
        ("unreadable", "presence.run.unreadable_groups"),
    ];
    for (tile, what) in charts {
        let query = tiles.get(tile).unwrap_or_else(|| panic!("no tile {tile} in {:?}", tiles.keys()));
        assert!(query.starts_with(what) || metric_names(query).contains(&what), "{tile}: {query}");
        assert!(query.contains("bin(timestamp, {TimeRange:grain})"), "{tile} is not over time: {query}");
    }
    assert!(quoted_after(&tiles["failures"], "tostring(customDimensions.outcome) ==") == ["failure"]);
    assert!(tiles["failures"].contains("customDimensions.stage"));
}

#[test]
fn monitoring_queries_use_only_names_the_handler_and_the_host_emit() {
    let template = template();
    let eval = Evaluator::new(&template, sample_parameters());
    let queries = monitoring_queries(&eval, &template);
    assert!(queries.len() >= ALERTS.len() + 7, "{queries:?}");
    let figures: BTreeSet<&str> = FIGURES.iter().map(|f| f.name).collect();
    let run_metrics =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/telemetry/run_metrics.rs")).unwrap();
    let timer = eval.variable("timerFunctionName").render();

    for (at, query) in &queries {
        for name in metric_names(query) {
            assert!(
                name == RUNS || name == FIGURE_PREFIX || figures.contains(name),
                "{at}: {name} is not a metric the handler emits (telemetry::run_metrics::RUNS, FIGURES)"
            );
        }
        if query.starts_with("customMetrics") {
            assert!(!metric_names(query).is_empty(), "{at}: a customMetrics query must name its metrics");
            // A histogram row's `value` is the sum of the export's recordings (= valueSum) and
            // valueCount their number: averaging `value` goes wrong once two runs share a row.
            let bare_value = query.split(|c: char| !(c.is_alphanumeric() || c == '_')).any(|w| w == "value");
            assert!(!bare_value, "{at}: use valueSum / valueCount / valueMax, not value: {query}");
        }
        for outcome in quoted_after(query, "tostring(customDimensions.outcome) ==") {
            assert!(
                run_metrics.contains(&format!("KeyValue::new(\"outcome\", \"{outcome}\")")),
                "{at}: the handler records no outcome {outcome:?}"
            );
        }
        for role in quoted_after(query, "cloud_RoleName ==") {
            assert_eq!(role, SERVICE_NAME, "{at}: the handler's rows carry its service name as cloud_RoleName");
        }
        if query.starts_with("dependencies") {
            let types = list_after(query, "type in (");
            assert!(types.contains(&COSMOS_DB_SYSTEM) && types.contains(&"HTTP"), "{at}: {types:?}");
            assert!(types.iter().all(|t| *t == COSMOS_DB_SYSTEM || *t == "HTTP"), "{at}: {types:?}");
        }
        if query.starts_with("requests") {
            assert_eq!(quoted_after(query, "name =="), [timer.as_str()], "{at}: the host names requests by function");
        }
    }
}

/// Durations as docs/operations.md writes them: `PT5M` is `5 min`, `PT1H` is `1 h`.
fn human_duration(iso: &str) -> String {
    let d = iso.strip_prefix("PT").unwrap_or_else(|| panic!("{iso}"));
    match d.split_at(d.len() - 1) {
        (n, "M") => format!("{n} min"),
        (n, "H") => format!("{n} h"),
        _ => panic!("{iso}"),
    }
}

#[test]
fn the_operations_doc_shows_the_deployed_queries_and_alert_conditions() {
    let template = template();
    let eval = Evaluator::new(&template, sample_parameters());
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md")).unwrap();
    let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat_doc = flat(&doc);
    for (at, query) in monitoring_queries(&eval, &template) {
        let block = flat(&format!("```kusto\n{query}\n```"));
        assert!(flat_doc.contains(&block), "docs/operations.md does not show the query of {at}:\n{query}");
    }

    for (name, rule) in alert_rules(&eval, &template) {
        let p = &rule["properties"];
        let c = &p["criteria"]["allOf"][0];
        let short = name.strip_prefix("Teams Presence: ").unwrap_or_else(|| panic!("{name}"));
        let short = format!("{}{}", short[..1].to_uppercase(), &short[1..]);
        let operator = match c["operator"].as_str().unwrap() {
            "LessThan" => "<",
            "LessThanOrEqual" => "≤",
            "GreaterThan" => ">",
            "GreaterThanOrEqual" => "≥",
            other => panic!("{name}: operator {other}"),
        };
        let condition = match c["timeAggregation"].as_str().unwrap() {
            "Count" => format!("rows {operator} {}", c["threshold"]),
            "Total" => {
                format!("total of `{}` {operator} {}", c["metricMeasureColumn"].as_str().unwrap(), c["threshold"])
            }
            other => panic!("{name}: aggregation {other} has no wording in the doc yet"),
        };
        let row = format!(
            "| {short} | {} | {} | {} | {condition} |",
            p["severity"],
            human_duration(p["evaluationFrequency"].as_str().unwrap()),
            human_duration(p["windowSize"].as_str().unwrap()),
        );
        assert!(doc.contains(&row), "docs/operations.md has no alert table row {row}");
        assert!(doc.contains(&format!("\n### {short}\n")), "docs/operations.md has no section ### {short}");
    }
    for stage in [FailedStage::Configuration, FailedStage::Initialisation, FailedStage::Cycle] {
        assert!(doc.contains(&format!("`{}`", stage.as_str())), "the doc does not explain the stage {stage:?}");
    }
}

/// A JSON file left under arm/ is not deployed (only these three go into app.zip): monitoring
/// that lived in a separate part was never installed.
#[test]
fn everything_under_arm_is_shipped_in_the_application_package() {
    fn walk(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, base, out);
            } else {
                out.insert(path.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = BTreeSet::new();
    walk(&root.join("arm"), &root.join("arm"), &mut files);
    let shipped = ["createUiDefinition.json", "mainTemplate.json", "viewDefinition.json"];
    assert_eq!(files, shipped.iter().map(|f| f.to_string()).collect::<BTreeSet<_>>(), "merge it into the template");
    let script = std::fs::read_to_string(root.join("scripts/package.sh")).unwrap();
    for file in shipped {
        assert!(script.contains(&format!("arm/{file}")), "scripts/package.sh does not ship arm/{file}");
    }
}

/// `local.settings.json.example` lists every setting the binary reads (the developer credentials
/// aside: set, even empty, they would change which credential is picked), and its values work
/// with the Graph simulator's defaults (`graph-sim --port 8089`).
#[test]
fn the_local_settings_example_lists_every_setting_with_a_working_value() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("local.settings.json.example");
    let example: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let values = example["Values"].as_object().unwrap();
    let platform: BTreeSet<&str> = SET_BY_PLATFORM.iter().map(|(n, _)| *n).collect();
    for name in settings_the_binary_reads() {
        if name.starts_with("AZURE_") || (platform.contains(name.as_str()) && !name.starts_with("IDENTITY_")) {
            continue;
        }
        assert!(values.contains_key(&name), "local.settings.json.example lacks {name}");
    }
    let command = RawSettings::augment_args(clap::Command::new("x").no_binary_name(true));
    let mut argv = Vec::new();
    for arg in command.get_arguments() {
        let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else { continue };
        if let Some(value) = values.get(env.to_string_lossy().as_ref()).and_then(Value::as_str) {
            argv.push(format!("--{long}={value}"));
        }
    }
    let matches = command.try_get_matches_from(argv).unwrap();
    let raw = RawSettings::from_arg_matches(&matches).unwrap();
    let config = Config::parse(&raw).expect("the example parses");
    assert_eq!(config.groups, teams_presence::simulator::standard_groups()[..3].to_vec());
    let sim = teams_presence::simulator::SimConfig::new(1);
    assert_eq!(values["IDENTITY_HEADER"], sim.identity_header.as_str(), "the simulator's default header");
}
