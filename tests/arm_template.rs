//! The Managed Application's ARM template, checked without Azure: every expression resolves, the
//! app settings match what the binary reads, and the security properties hold. The monitoring
//! (alerts, workbook) is checked in arm_monitoring.rs, the ARM-TTK rules in arm_ttk.rs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use clap::{Args, FromArgMatches};
use common::arm::{
    Evaluator, GROUP_A, GROUP_B, Val, key_of, linked_evaluator, one_of, read_json, resources_of, sample_parameters,
    template,
};
use common::cosmos_emulator::Emulator;
use serde_json::{Value, json};
use teams_presence::config::{Config, RawSettings, StoreSettings};

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
    let eval = linked_evaluator(&template);
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
            "reference(variables('cosmosAccountId'), '2025-04-15').documentEndpoint",
            "reference(resourceId('Microsoft.DocumentDB/databaseAccounts', 'elsewhere'), '2025-04-15').documentEndpoint",
            "databaseAccounts/elsewhere, which the template does not declare",
        ),
        (
            "\"[resourceId('Microsoft.Web/sites', variables('functionAppName'))]\"\n",
            "\"[resourceId('Microsoft.Web/sites', 'another-app')]\"\n",
            "another-app",
        ),
        (
            "\"Authorization=AAD\"",
            "\"[listKeys(variables('storageAccountId'), '2025-01-01').keys[0].value]\"",
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
        let eval = linked_evaluator(&broken);
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
    let eval = Evaluator::new(&template, params).with_template_link(common::arm::STAGED_TEMPLATE);
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
    // The port settings the host sets, a list fed to env::var.
    names.extend(teams_presence::functions_host::PORT_SETTINGS.iter().map(|n| n.to_string()));
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
    let eval = linked_evaluator(&template);
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
    let eval = linked_evaluator(&template);
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
        if name == "_artifactsLocationSasToken" {
            // ARM-TTK's artifacts pattern: optional, empty by default, only ever appended to the
            // package URL (never stored in a setting or an output).
            assert_eq!((ty.as_str(), &spec["defaultValue"]), ("securestring", &json!("")));
            continue;
        }
        assert!(!ty.starts_with("secure"), "parameter {name} is a secret; the design needs none");
    }
    let eval = linked_evaluator(&template);
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
    let eval = linked_evaluator(&template);
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
    // Only point operations touch the state container: no index at all
    // (https://learn.microsoft.com/azure/cosmos-db/index-policy#indexing-mode, "none").
    assert_eq!(state["indexingPolicy"], json!({ "indexingMode": "none", "automatic": false }));
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
    // FTP is off through the basic publishing credentials policy below; `ftpsState` is on the Flex
    // Consumption deprecation list (functions-app-settings#flex-consumption-plan-deprecations).
    assert!(p["siteConfig"].get("ftpsState").is_none(), "ftpsState is deprecated on Flex Consumption");
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
    let eval = linked_evaluator(&template);
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
    let eval = linked_evaluator(&template);
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
    let eval = linked_evaluator(&template);
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
// Code deployment, attribution, outputs

/// The code comes from function-package.zip beside the template (inside app.zip), addressed from
/// `deployment().properties.templateLink.uri` as ARM-TTK's artifacts rule and the
/// managed-application-with-linked-templates sample do; the form has no package URL.
#[test]
fn code_is_deployed_from_the_package_beside_the_template_after_storage_access_is_granted() {
    let template = template();
    let onedeploy = one_of(&template, "Microsoft.Web/sites/extensions");
    assert!(onedeploy["name"].as_str().unwrap().contains("'onedeploy'"));
    assert_eq!(onedeploy["properties"]["remoteBuild"], false);
    let depends: Vec<String> =
        onedeploy["dependsOn"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_string()).collect();
    assert!(
        depends
            .iter()
            .any(|d| d.contains("Microsoft.Authorization/roleAssignments") && d.contains("storageBlobDataOwner"))
    );

    // Staged by the Managed Applications service: uri() drops the staging URL's query string, as
    // ARM's uri() does. Whether the staged copy is readable without it is the open question of
    // docs/deployment.md ("Where the code comes from"), with its fallback below.
    let eval = linked_evaluator(&template);
    let url = eval.eval_value(&onedeploy["properties"]["packageUri"], "packageUri").render();
    assert_eq!(url, "https://stage.contoso.example/applicationDefinitions/0001/function-package.zip");
    // az deployment group create --template-uri <private blob> --parameters _artifactsLocationSasToken=?<sas>
    let mut params = sample_parameters();
    params.insert("_artifactsLocationSasToken".into(), json!("?sv=2024-11-04&sig=xyz"));
    let private =
        Evaluator::new(&template, params).with_template_link("https://acct.example/releases/v1/mainTemplate.json");
    assert_eq!(
        private.eval_value(&onedeploy["properties"]["packageUri"], "packageUri").render(),
        "https://acct.example/releases/v1/function-package.zip?sv=2024-11-04&sig=xyz"
    );
    // The documented fallback: a public URL baked in by scripts/package.sh (FUNCTION_PACKAGE_URI).
    let mut params = sample_parameters();
    params.insert("packageUriOverride".into(), json!("https://releases.contoso.example/v1/function-package.zip"));
    let fallback = Evaluator::new(&template, params).with_template_link(common::arm::STAGED_TEMPLATE);
    assert_eq!(
        fallback.eval_value(&onedeploy["properties"]["packageUri"], "packageUri").render(),
        "https://releases.contoso.example/v1/function-package.zip"
    );
    // A local file has no templateLink: the default fails (as ARM does), naming the property.
    let local = Evaluator::new(&template, sample_parameters());
    local.eval_value(&onedeploy["properties"]["packageUri"], "packageUri");
    assert!(local.errors().iter().any(|e| e.contains("no property \"templateLink\"")), "{:?}", local.errors());

    let pid = one_of(&template, "Microsoft.Resources/deployments");
    let name = pid["name"].as_str().unwrap();
    let guid = name.strip_prefix("pid-").expect("attribution deployment is named pid-<GUID>");
    uuid::Uuid::parse_str(guid).expect("pid- is followed by a GUID");
    assert_eq!(pid["properties"]["template"]["resources"], json!([]));
}

#[test]
fn outputs_give_the_function_app_name_and_its_identity() {
    let template = template();
    let eval = linked_evaluator(&template);
    let outputs = template["outputs"].as_object().unwrap();
    let name = eval.eval_value(&outputs["functionAppName"]["value"], "out").render();
    assert!(name.starts_with("presence-") && name.len() == "presence-".len() + 13, "{name}");
    let principal = eval.eval_value(&outputs["principalId"]["value"], "out").render();
    assert_eq!(principal, format!("<runtime:reference(microsoft.web/sites|{name}).identity.principalId>"));
}

#[test]
fn generated_names_fit_azure_limits() {
    let template = template();
    let eval = linked_evaluator(&template);
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

/// A JSON file left under arm/ is not deployed unless scripts/package.sh ships it (monitoring that
/// lived in a separate part was never installed); arm/publishing/ holds the publisher-side access
/// model, which the publishing script applies and which is never shipped to customers.
#[test]
fn everything_under_arm_is_shipped_in_the_application_package_or_is_the_publishing_model() {
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
    let publishing = ["publishing/access-model.json"];
    let expected: BTreeSet<String> = shipped.iter().chain(&publishing).map(|f| f.to_string()).collect();
    assert_eq!(files, expected, "merge it into the template, or ship it from scripts/package.sh");
    let script = std::fs::read_to_string(root.join("scripts/package.sh")).unwrap();
    for file in shipped {
        assert!(script.contains(&format!("arm/{file}")), "scripts/package.sh does not ship arm/{file}");
    }
    assert!(!script.contains("publishing/"), "the access model is the publisher's, not the customer's");
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
