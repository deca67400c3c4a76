//! The Managed Application's ARM template, checked without Azure: every expression resolves, the
//! app settings match what the binary reads, and the security properties hold.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use clap::{Args, FromArgMatches};
use common::arm::{Evaluator, Val, key_of};
use serde_json::{Value, json};
use teams_presence::config::{Config, RawSettings, StoreSettings};

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
        "the host sends its request, dependency and log telemetry to Application Insights",
    ),
    (
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        "makes the host authenticate to Application Insights with Entra ID (local auth is off)",
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

    let excused: BTreeSet<&str> = LOCAL_ONLY.iter().chain(SET_BY_PLATFORM).map(|(n, _)| *n).collect();
    let missing: Vec<&String> = read.iter().filter(|n| !set.contains(*n) && !excused.contains(n.as_str())).collect();
    assert!(missing.is_empty(), "the binary reads these settings but the template does not set them: {missing:?}");

    let host: BTreeSet<&str> = FOR_HOST_OR_PLATFORM.iter().map(|(n, _)| *n).collect();
    let unread: Vec<&String> = set.iter().filter(|n| !read.contains(*n) && !host.contains(n.as_str())).collect();
    assert!(unread.is_empty(), "the template sets settings nothing reads: {unread:?}");

    for (name, _) in LOCAL_ONLY {
        assert!(!set.contains(*name), "{name} is local-only and must not be set by the template");
    }
    // The store's local-only settings come from clap: if they vanish, this list is stale.
    for name in ["COSMOS_KEY", "PRESENCE_DB"] {
        assert!(read.contains(name), "{name} is listed as local-only but the binary no longer reads it");
    }
    let lists = [LOCAL_ONLY, SET_BY_PLATFORM, FOR_HOST_OR_PLATFORM];
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

#[test]
fn cosmos_containers_match_the_code_with_ttl_and_minimal_indexing() {
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
    let history = &containers[teams_presence::config::DEFAULT_COSMOS_CONTAINER];
    assert_eq!(history["partitionKey"]["paths"], json!(["/userId"]));
    assert_eq!(history["defaultTtl"], json!(30 * 86_400), "TTL follows retentionDays (30 in the sample)");
    assert_eq!(history["indexingPolicy"]["includedPaths"], json!([{ "path": "/timestamp/?" }]));
    assert_eq!(history["indexingPolicy"]["excludedPaths"], json!([{ "path": "/*" }]));

    let state = &containers[teams_presence::config::DEFAULT_COSMOS_STATE_CONTAINER];
    assert_eq!(state["partitionKey"]["paths"], json!(["/pk"]));
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
// Alerts (from the host's own request telemetry; the handler's metrics add more later)

#[test]
fn alerts_watch_the_timer_function_and_mail_the_admin() {
    let template = template();
    let eval = Evaluator::new(&template, sample_parameters());
    let group = one_of(&template, "Microsoft.Insights/actionGroups");
    assert_eq!(group["properties"]["emailReceivers"][0]["emailAddress"], "[parameters('alertEmail')]");
    let group_name = eval.eval_value(&group["name"], "group").render();

    let functions: Vec<String> = std::fs::read_dir(env!("CARGO_MANIFEST_DIR"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("function-"))
        .collect();
    let mut windows = BTreeMap::new();
    for rule in resources_of(&template, "Microsoft.Insights/scheduledQueryRules") {
        let rule = match eval.eval_value(rule, "alert") {
            Val::Json(v) => v,
            other => panic!("{other:?}"),
        };
        let p = &rule["properties"];
        let name = p["displayName"].as_str().unwrap().to_string();
        assert_eq!(p["scopes"].as_array().unwrap().len(), 1);
        assert!(key_of(p["scopes"][0].as_str().unwrap()).starts_with("microsoft.insights/components|"), "{name}");
        let action = p["actions"]["actionGroups"][0].as_str().unwrap();
        assert_eq!(key_of(action), format!("microsoft.insights/actiongroups|{group_name}"), "{name}");
        let query = p["criteria"]["allOf"][0]["query"].as_str().unwrap();
        let function = query.split('\'').nth(1).unwrap_or_default();
        assert!(functions.iter().any(|f| f == function), "{name}: {query} names no function folder of {functions:?}");
        windows.insert(name, (p["windowSize"].clone(), p["criteria"]["allOf"][0]["operator"].clone()));
    }
    assert_eq!(
        windows,
        BTreeMap::from([
            ("Teams Presence: failed runs".to_string(), (json!("PT5M"), json!("GreaterThan"))),
            ("Teams Presence: no successful run for 15 minutes".to_string(), (json!("PT15M"), json!("LessThan"))),
        ])
    );
}
