//! An offline port of the ARM-TTK rules (github.com/Azure/arm-ttk, `arm-ttk/testcases/
//! deploymentTemplate/*.test.ps1` and `testcases/CreateUIDefinition/*.test.ps1`, read at commit
//! 0ec9a41a of 2026-02-13) that Marketplace validation runs and that need no Azure: each function
//! returns the problems it finds, named like the rule it ports. Rules that look at resource
//! types ARM-TTK does not ship here (VM images, VM sizes, passwords) have nothing to check in
//! these templates and are not ported.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde_json::Value;

use super::arm::{Expr, is_expression, parse};

/// The table of newest known stable API versions (tests/fixtures/arm-api-versions.json).
pub struct ApiVersions {
    newest: BTreeMap<String, String>,
}

impl ApiVersions {
    pub fn load() -> Self {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/arm-api-versions.json");
        let table: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let newest = table["types"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(ty, entry)| (ty.to_lowercase(), entry["newest"].as_str().unwrap().to_string()))
            .collect();
        Self { newest }
    }

    /// The newest version for a type, else for its closest listed parent (as ARM-TTK does).
    fn newest_for(&self, ty: &str) -> Option<&str> {
        let segments: Vec<&str> = ty.split('/').collect();
        (2..=segments.len())
            .rev()
            .find_map(|n| self.newest.get(&segments[..n].join("/").to_lowercase()))
            .map(String::as_str)
    }
}

fn version_date(version: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(version.get(..10)?, "%Y-%m-%d").ok()
}

/// apiVersions-Should-Be-Recent and apiVersions-Should-Be-Recent-In-Reference-Functions: a
/// version older than `max_days` fails when the table knows a newer stable one; a preview fails
/// when a stable one exists; a type the table does not know fails (so the table stays complete).
pub fn api_versions_should_be_recent(template: &Value, table: &ApiVersions, today: NaiveDate) -> Vec<String> {
    const MAX_DAYS: i64 = 730;
    let mut uses: Vec<(String, String, String)> = Vec::new(); // (where, type, version)
    resource_versions(template, "", &mut uses);
    for (at, ty, version) in reference_versions(template) {
        uses.push((at, ty, version));
    }
    let mut errors = Vec::new();
    for (at, ty, version) in uses {
        let Some(newest) = table.newest_for(&ty) else {
            errors.push(format!("{at}: {ty} is not in tests/fixtures/arm-api-versions.json"));
            continue;
        };
        let Some(date) = version_date(&version) else {
            errors.push(format!("{at}: Api versions must be a fixed date. {ty} uses {version}"));
            continue;
        };
        let newest_date = version_date(newest).unwrap_or(date);
        if version.len() > 10 && newest_date >= date {
            errors.push(format!("{at}: {ty} uses a preview version ({version}) and {newest} is stable"));
        }
        if date > newest_date {
            errors.push(format!("{at}: {ty}@{version} is newer than the table's {newest}: update the table"));
        }
        let age = (today - date).num_days();
        if age > MAX_DAYS && newest_date > date {
            errors.push(format!(
                "{at}: Api versions must be the latest or under 2 years old (730 days) - API version {version} of {ty} is {age} days old; {newest} is available"
            ));
        }
    }
    errors
}

fn resource_versions(scope: &Value, parent_type: &str, out: &mut Vec<(String, String, String)>) {
    for (i, resource) in scope["resources"].as_array().into_iter().flatten().enumerate() {
        let ty = resource["type"].as_str().unwrap_or_default();
        let full = if parent_type.is_empty() || ty.contains('/') && ty.contains('.') {
            ty.to_string()
        } else {
            format!("{parent_type}/{ty}")
        };
        if let Some(version) = resource["apiVersion"].as_str() {
            out.push((format!("resources[{i}] ({full})"), full.clone(), version.to_string()));
        }
        resource_versions(resource, &full, out);
        // A nested deployment's own template is a scope of its own.
        if let Some(inner) = resource.pointer("/properties/template") {
            resource_versions(inner, "", out);
        }
    }
}

/// `reference(x, 'version')` and `list*(x, 'version')` calls anywhere in the template, with the
/// type their first argument names (through `resourceId` or a variable holding one).
fn reference_versions(template: &Value) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    let mut strings = Vec::new();
    collect_strings(template, "", &mut strings);
    for (at, text) in strings {
        if !is_expression(&text) {
            continue;
        }
        let Ok(expr) = parse(&text[1..text.len() - 1]) else { continue };
        let mut calls = Vec::new();
        calls_named(&expr, &mut calls);
        for (name, args) in calls {
            let lower = name.to_lowercase();
            if lower != "reference" && !lower.starts_with("list") {
                continue;
            }
            let Some(Expr::Str(version)) = args.get(1) else { continue };
            if let Some(ty) = args.first().and_then(|a| target_type(a, template)) {
                found.push((format!("{at}: {name}()"), ty, version.clone()));
            }
        }
    }
    found
}

fn target_type(expr: &Expr, template: &Value) -> Option<String> {
    match expr {
        Expr::Call(name, args) if name.eq_ignore_ascii_case("resourceId") => args.iter().find_map(|a| match a {
            Expr::Str(s) if s.contains('/') && s.contains('.') => Some(s.clone()),
            _ => None,
        }),
        Expr::Call(name, args) if name.eq_ignore_ascii_case("variables") => {
            let Some(Expr::Str(var)) = args.first() else { return None };
            let text = template["variables"][var].as_str()?;
            target_type(&parse(&text[1..text.len() - 1]).ok()?, template)
        }
        _ => None,
    }
}

fn calls_named(expr: &Expr, out: &mut Vec<(String, Vec<Expr>)>) {
    match expr {
        Expr::Call(name, args) => {
            out.push((name.clone(), args.clone()));
            args.iter().for_each(|a| calls_named(a, out));
        }
        Expr::Prop(inner, _) => calls_named(inner, out),
        Expr::Index(a, b) => {
            calls_named(a, out);
            calls_named(b, out);
        }
        Expr::Str(_) | Expr::Int(_) => {}
    }
}

fn collect_strings(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::String(s) => out.push((at.to_string(), s.clone())),
        Value::Array(items) => {
            items.iter().enumerate().for_each(|(i, v)| collect_strings(v, &format!("{at}[{i}]"), out));
        }
        Value::Object(map) => {
            map.iter().for_each(|(k, v)| collect_strings(v, &format!("{at}.{k}"), out));
        }
        _ => {}
    }
}

/// Every `(path, key, value)` whose value is `{}`, `[]`, `""` or null.
fn blanks(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    if let Value::Object(map) = value {
        for (k, v) in map {
            let path = format!("{at}.{k}");
            let blank = match v {
                Value::Null => true,
                Value::String(s) => s.trim().is_empty(),
                Value::Array(a) => a.is_empty(),
                Value::Object(o) => o.is_empty(),
                _ => false,
            };
            if blank {
                out.push((path.clone(), k.clone()));
            }
            blanks(v, &path, out);
        }
    } else if let Value::Array(items) = value {
        items.iter().enumerate().for_each(|(i, v)| blanks(v, &format!("{at}[{i}]"), out));
    }
}

/// Template-Should-Not-Contain-Blanks, with ARM-TTK's list of properties that may be empty.
pub fn template_should_not_contain_blanks(template: &Value) -> Vec<String> {
    const MAY_BE_EMPTY: &[&str] = &[
        "resources",
        "outputs",
        "variables",
        "parameters",
        "functions",
        "properties",
        "template",
        "defaultValue",
        "accessPolicies",
        "value",
        "promotionCode",
        "inputs",
        "notEquals",
        "clientId",
        "allowedCallerIpAddresses",
        "workerPools",
        "AzureMonitor",
        "requiredDataConnectors",
        "UserTokenPrepend",
    ];
    let mut found = Vec::new();
    blanks(template, "", &mut found);
    found
        .into_iter()
        .filter(|(_, key)| !MAY_BE_EMPTY.contains(&key.as_str()))
        .map(|(p, _)| format!("Empty property: {p}"))
        .collect()
}

/// Location-Should-Not-Be-Hardcoded and Resources-Should-Have-Location (main template).
pub fn location_rules(template: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let location = &template["parameters"]["location"];
    if !location.is_null() {
        if location["type"] != "string" {
            errors.push("The location parameter must be a 'string'".into());
        }
        let default = location["defaultValue"].as_str().unwrap_or_default().trim();
        if !["", "[resourceGroup().location]", "[deployment().location]", "global"].contains(&default) {
            errors
                .push(format!("The defaultValue of the location parameter must not be a specific location: {default}"));
        }
    }
    let mut rest = template.clone();
    if let Some(map) = rest.as_object_mut() {
        map.remove("parameters");
    }
    for resource in rest["resources"].as_array_mut().into_iter().flatten() {
        // Nested deployments are ARM-TTK's ignored ranges.
        if resource["type"] == "Microsoft.Resources/deployments"
            && let Some(p) = resource.get_mut("properties").and_then(Value::as_object_mut)
        {
            p.remove("template");
        }
    }
    let text = rest.to_string().to_lowercase();
    for pattern in ["resourcegroup().location", "deployment().location"] {
        if text.contains(pattern) {
            errors.push(format!("must use the location parameter, not {pattern} (except as its default value)"));
        }
    }
    for (i, resource) in template["resources"].as_array().into_iter().flatten().enumerate() {
        if let Some(loc) = resource.get("location") {
            let loc = loc.as_str().unwrap_or_default().trim();
            if !is_expression(loc) && !loc.eq_ignore_ascii_case("global") {
                errors.push(format!("resources[{i}]: Location value of '{loc}' must be an expression or 'global'"));
            }
        }
    }
    errors
}

/// DeploymentTemplate-Must-Not-Contain-Hardcoded-Uri: cloud-specific hosts outside `parameters`
/// (a `$schema` URL is the exception).
pub fn no_hardcoded_uris(template: &Value) -> Vec<String> {
    const DISALLOWED: &[&str] = &[
        "management.core.windows.net",
        "gallery.azure.com",
        "management.azure.com",
        "database.windows.net",
        "core.windows.net",
        "login.microsoftonline.com",
        "graph.windows.net",
        "vault.azure.net",
        "datalake.azure.net",
        "azuredatalakestore.net",
        "azuredatalakeanalytics.net",
        "api.loganalytics.io",
        "asazure.windows.net",
        "region.asazure.windows.net",
        "batch.core.windows.net",
    ];
    let mut rest = template.clone();
    if let Some(map) = rest.as_object_mut() {
        map.remove("parameters");
    }
    let text = rest.to_string().to_lowercase();
    let mut errors = Vec::new();
    for host in DISALLOWED {
        for (i, _) in text.match_indices(host) {
            if !text[..i].ends_with("https://schema.") {
                errors.push(format!("Found hardcoded reference to {host}"));
            }
        }
    }
    errors
}

/// Outputs-Must-Not-Contain-Secrets.
pub fn outputs_must_not_contain_secrets(template: &Value) -> Vec<String> {
    let secure: Vec<&String> = template["parameters"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, p)| {
            p["type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case("securestring") || t.eq_ignore_ascii_case("secureobject"))
        })
        .map(|(n, _)| n)
        .collect();
    let mut errors = Vec::new();
    for (name, output) in template["outputs"].as_object().into_iter().flatten() {
        let mut strings = Vec::new();
        collect_strings(output, name, &mut strings);
        for (_, text) in strings.iter().filter(|(_, s)| is_expression(s)) {
            let Ok(expr) = parse(&text[1..text.len() - 1]) else { continue };
            let mut calls = Vec::new();
            calls_named(&expr, &mut calls);
            if calls.iter().any(|(n, _)| n.to_lowercase().starts_with("list")) {
                errors.push(format!("Output contains secret: {name}"));
            }
            for (n, args) in &calls {
                if n.eq_ignore_ascii_case("parameters")
                    && let Some(Expr::Str(p)) = args.first()
                    && secure.contains(&p)
                {
                    errors.push(format!("Output contains securestring parameter: {name}"));
                }
            }
        }
        if name.to_lowercase().contains("password") {
            errors.push(format!("Output name suggests secret: {name}"));
        }
    }
    errors
}

/// artifacts-parameter (main template), Secure-String-Parameters-Cannot-Have-Default,
/// Min-And-Max-Value-Are-Numbers, providers_apiVersions-Is-Not-Permitted and
/// DeploymentTemplate-Schema-Is-Correct.
pub fn parameter_rules(template: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let params = &template["parameters"];
    let location = &params["_artifactsLocation"];
    if !location.is_null() {
        if location["type"] != "string" {
            errors.push("_artifactsLocation must be a 'string'".into());
        }
        let default = location["defaultValue"].as_str().unwrap_or_default();
        if !default.contains("deployment().properties.templateLink") {
            errors.push(format!("_artifactsLocation has an incorrect defaultValue, found: {default:?}"));
        }
        let token = &params["_artifactsLocationSasToken"];
        if token.is_null() {
            errors.push("the template is missing the _artifactsLocationSasToken parameter".into());
        } else if !token["type"].as_str().is_some_and(|t| t.eq_ignore_ascii_case("securestring")) {
            errors.push("_artifactsLocationSasToken must be of type 'secureString'".into());
        } else if token["defaultValue"] != "" {
            errors.push("_artifactsLocationSasToken must default to an empty string".into());
        }
    }
    for (name, p) in params.as_object().into_iter().flatten() {
        let secure = p["type"].as_str().is_some_and(|t| t.eq_ignore_ascii_case("securestring"));
        let default = p["defaultValue"].as_str().unwrap_or_default();
        if secure && !default.is_empty() && !default.to_lowercase().contains("newguid()") {
            errors.push(format!("Parameter {name} is a SecureString and must not have a default value"));
        }
        if p.get("minValue").is_some() != p.get("maxValue").is_some() {
            errors.push(format!("{name} must have both minValue and maxValue"));
        }
        for bound in ["minValue", "maxValue"] {
            if p.get(bound).is_some_and(|v| !v.is_i64()) {
                errors.push(format!("{name} {bound} is not an integer"));
            }
        }
    }
    if template.to_string().contains("providers(") && template.to_string().contains(").apiVersions") {
        errors.push("providers().apiVersions is not permitted, use a literal apiVersion".into());
    }
    let schemas = [
        "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "https://schema.management.azure.com/schemas/2018-05-01/subscriptionDeploymentTemplate.json#",
    ];
    if !template["$schema"].as_str().is_some_and(|s| schemas.contains(&s)) {
        errors.push(format!("DeploymentTemplate has an unexpected Schema: {}", template["$schema"]));
    }
    errors
}

/// URIs-Should-Be-Properly-Constructed: a property named `*uri`/`*url` built with concat() or
/// format() must build it inside uri().
pub fn uris_should_be_properly_constructed(template: &Value) -> Vec<String> {
    fn walk(value: &Value, at: &str, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let lower = k.to_lowercase();
                    if (lower.ends_with("uri") || lower.ends_with("url"))
                        && let Some(text) = v.as_str().filter(|s| is_expression(s))
                    {
                        let lower_text = text.to_lowercase();
                        let bad = ["concat(", "format("].iter().filter_map(|f| lower_text.find(f)).min();
                        let uri = lower_text.find("uri(");
                        if let Some(bad) = bad
                            && uri.is_none_or(|u| bad < u)
                        {
                            out.push(format!("{at}.{k}: concat() or format() outside uri() in {text}"));
                        }
                    }
                    walk(v, &format!("{at}.{k}"), out);
                }
            }
            Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| walk(v, &format!("{at}[{i}]"), out)),
            _ => {}
        }
    }
    let mut errors = Vec::new();
    walk(template, "", &mut errors);
    errors
}

/// Every template rule above, for one template.
pub fn template_rules(template: &Value, table: &ApiVersions, today: NaiveDate) -> Vec<String> {
    let mut errors = api_versions_should_be_recent(template, table, today);
    errors.extend(template_should_not_contain_blanks(template));
    errors.extend(location_rules(template));
    errors.extend(no_hardcoded_uris(template));
    errors.extend(outputs_must_not_contain_secrets(template));
    errors.extend(parameter_rules(template));
    errors.extend(uris_should_be_properly_constructed(template));
    errors
}

// ---------------------------------------------------------------------------------------------
// createUiDefinition.json

/// Outputs the Managed Applications service consumes itself (ARM-TTK skips them).
pub const MANAGED_APP_OUTPUTS: &[&str] =
    &["applicationresourcename", "jitaccesspolicy", "managedidentity", "managedresourcegroupid"];

/// Every element of the form, steps and basics, nested sections included.
fn elements(ui: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for e in list.as_array().into_iter().flatten() {
            out.push(e);
            walk(&e["elements"], out);
        }
    }
    let mut out = Vec::new();
    walk(&ui["parameters"]["basics"], &mut out);
    for step in ui["parameters"]["steps"].as_array().into_iter().flatten() {
        walk(&step["elements"], &mut out);
    }
    out
}

/// The CreateUIDefinition rules: handler, schema and version, location output, outputs ↔
/// template parameters, controls in outputs exist, text boxes with regex and message, tooltips,
/// validations with messages, no blanks.
pub fn form_rules(ui: &Value, template: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    if !["Microsoft.Azure.CreateUIDef", "Microsoft.Compute.MultiVm"]
        .contains(&ui["handler"].as_str().unwrap_or_default())
    {
        errors.push(format!(
            "The handler must be Microsoft.Azure.CreateUIDef or Microsoft.Compute.MultiVm: {}",
            ui["handler"]
        ));
    }
    if ui["$schema"] != "https://schema.management.azure.com/schemas/0.1.2-preview/CreateUIDefinition.MultiVm.json#" {
        errors.push(format!("CreateUIDefinition has an incorrect schema: {}", ui["$schema"]));
    }
    if ui["version"] != "0.1.2-preview" {
        errors.push(format!("CreateUIDefinition version {} differs from the schema's 0.1.2-preview", ui["version"]));
    }
    let outputs = ui["parameters"]["outputs"].as_object().cloned().unwrap_or_default();
    if outputs.get("location").and_then(Value::as_str).map(str::trim) != Some("[location()]") {
        errors.push("CreateUIDefinition.outputs.location must be [location()]".into());
    }
    let params = template["parameters"].as_object().cloned().unwrap_or_default();
    for name in outputs.keys() {
        if !MANAGED_APP_OUTPUTS.contains(&name.to_lowercase().as_str()) && !params.contains_key(name) {
            errors.push(format!("output {name} does not exist in template.parameters"));
        }
    }
    for (name, p) in &params {
        if p.get("defaultValue").is_none() && !outputs.contains_key(name) {
            errors.push(format!(
                "{name} does not have a default value, and is not defined in CreateUIDefinition.outputs"
            ));
        }
    }
    let steps: BTreeMap<&str, BTreeSet<&str>> = ui["parameters"]["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let names = s["elements"].as_array().into_iter().flatten().filter_map(|e| e["name"].as_str()).collect();
            (s["name"].as_str().unwrap_or_default(), names)
        })
        .collect();
    let basics: BTreeSet<&str> =
        ui["parameters"]["basics"].as_array().into_iter().flatten().filter_map(|e| e["name"].as_str()).collect();
    for (name, expression) in &outputs {
        let mut strings = Vec::new();
        collect_strings(expression, name, &mut strings);
        for (_, text) in strings.iter().filter(|(_, s)| is_expression(s)) {
            let Ok(expr) = parse(&text[1..text.len() - 1]) else {
                errors.push(format!("output {name}: cannot parse {text}"));
                continue;
            };
            check_step_refs(&expr, &steps, &basics, name, &mut errors);
        }
    }
    const NO_TOOLTIP: &[&str] = &[
        "Microsoft.Common.InfoBox",
        "Microsoft.Common.Section",
        "Microsoft.Common.TextBlock",
        "Microsoft.Solutions.ArmApiControl",
        "Microsoft.Solutions.GraphApiControl",
        "Microsoft.Common.EditableGrid",
        "Microsoft.Solutions.JitConfigurator",
    ];
    for e in elements(ui) {
        let ty = e["type"].as_str().unwrap_or_default();
        let name = e["name"].as_str().unwrap_or_default();
        if !NO_TOOLTIP.contains(&ty) && e["toolTip"].as_str().is_none_or(|t| t.trim().is_empty()) {
            errors.push(format!("Element missing tooltip: {name}"));
        }
        if ty == "Microsoft.Common.TextBox" {
            let c = &e["constraints"];
            let regex = c["validations"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|v| v["regex"].as_str())
                .or_else(|| c["regex"].as_str());
            match regex {
                None => errors.push(format!("Textbox {name} is missing constraints.regex")),
                Some(_) if c["validations"].is_null() && c["validationMessage"].as_str().is_none() => {
                    errors.push(format!("Textbox {name} is missing constraints.validationMessage"))
                }
                Some(_) => {}
            }
        }
        for v in e["constraints"]["validations"].as_array().into_iter().flatten() {
            if v.get("message").is_none() {
                errors.push(format!("Validations property in {name} is missing message"));
            }
        }
    }
    let mut found = Vec::new();
    blanks(ui, "", &mut found);
    for (path, key) in found {
        if !["basics", "defaultValue", "steps"].contains(&key.as_str()) {
            errors.push(format!("Empty property: {path}"));
        }
    }
    errors
}

fn check_step_refs(
    expr: &Expr,
    steps: &BTreeMap<&str, BTreeSet<&str>>,
    basics: &BTreeSet<&str>,
    output: &str,
    errors: &mut Vec<String>,
) {
    match expr {
        Expr::Prop(inner, element) => {
            if let Expr::Call(name, args) = inner.as_ref()
                && name == "steps"
                && let Some(Expr::Str(step)) = args.first()
            {
                match steps.get(step.as_str()) {
                    None => errors.push(format!("output {output}: could not find step '{step}'")),
                    Some(names) if !names.contains(element.as_str()) => {
                        errors.push(format!("output {output}: could not find element '{element}' in step '{step}'"))
                    }
                    Some(_) => {}
                }
                return;
            }
            check_step_refs(inner, steps, basics, output, errors);
        }
        Expr::Call(name, args) => {
            if name == "basics"
                && let Some(Expr::Str(control)) = args.first()
                && !basics.contains(control.as_str())
            {
                errors.push(format!("output {output}: could not find control '{control}' in basics"));
            }
            if name == "steps"
                && let Some(Expr::Str(step)) = args.first()
                && !steps.contains_key(step.as_str())
            {
                errors.push(format!("output {output}: could not find step '{step}'"));
            }
            args.iter().for_each(|a| check_step_refs(a, steps, basics, output, errors));
        }
        Expr::Index(a, b) => {
            check_step_refs(a, steps, basics, output, errors);
            check_step_refs(b, steps, basics, output, errors);
        }
        Expr::Str(_) | Expr::Int(_) => {}
    }
}
