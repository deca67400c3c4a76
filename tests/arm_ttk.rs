//! The offline ARM-TTK rules (tests/common/arm_ttk.rs) on the Managed Application's template and
//! form, and on the publisher's install-notification receiver template; each rule is also shown
//! to fail on a broken copy, so a rule that checks nothing cannot pass unnoticed.

mod common;

use chrono::{NaiveDate, Utc};
use common::arm::{read_json, template};
use common::arm_ttk::{ApiVersions, form_rules, template_rules};
use serde_json::{Value, json};

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

fn form() -> Value {
    read_json("arm/createUiDefinition.json")
}

#[test]
fn the_template_and_the_form_pass_the_offline_arm_ttk_rules() {
    let table = ApiVersions::load();
    assert_eq!(template_rules(&template(), &table, today()), Vec::<String>::new());
    assert_eq!(form_rules(&form(), &template()), Vec::<String>::new());
}

#[test]
fn the_receiver_template_passes_them_too() {
    let table = ApiVersions::load();
    let receiver = read_json("publisher/mainTemplate.json");
    assert_eq!(template_rules(&receiver, &table, today()), Vec::<String>::new());
}

/// Replaces the first `from` in the template's JSON text, which must occur.
fn broken(original: &Value, from: &str, to: &str) -> Value {
    let text = original.to_string();
    assert!(text.contains(from), "test case does not apply: {from}");
    serde_json::from_str(&text.replacen(from, to, 1)).unwrap()
}

fn errors_of(template: &Value, day: NaiveDate) -> String {
    template_rules(template, &ApiVersions::load(), day).join("\n")
}

#[test]
fn a_version_older_than_730_days_with_a_newer_one_in_the_table_fails() {
    let t = template();
    let old = broken(
        &t,
        "\"type\":\"Microsoft.Web/serverfarms\"",
        "\"type\":\"Microsoft.Web/serverfarms\",\"apiVersion\":\"2022-03-01\"",
    );
    // The inserted key comes after the sorted "apiVersion" in the text, so its value wins.
    assert_eq!(
        old["resources"].as_array().unwrap().iter().find(|r| r["type"] == "Microsoft.Web/serverfarms").unwrap()["apiVersion"],
        "2022-03-01"
    );
    let errors = errors_of(&old, today());
    assert!(
        errors.contains("API version 2022-03-01 of Microsoft.Web/serverfarms")
            && errors.contains("2025-03-01 is available"),
        "{errors}"
    );
    // Within 730 days of its date the same version still passes.
    let errors = errors_of(&old, NaiveDate::from_ymd_opt(2023, 3, 1).unwrap());
    assert!(!errors.contains("Microsoft.Web/serverfarms"), "{errors}");
    // Old is fine when it is the newest stable: Application Insights components are at 2020-02-02.
    assert!(t.to_string().contains("\"apiVersion\":\"2020-02-02\""));
}

#[test]
fn old_reference_versions_previews_and_unknown_types_fail() {
    let t = template();
    let reference = broken(
        &t,
        "reference(variables('cosmosAccountId'), '2025-04-15')",
        "reference(variables('cosmosAccountId'), '2021-04-15')",
    );
    let errors = errors_of(&reference, today());
    assert!(
        errors.contains("reference()") && errors.contains("2021-04-15 of Microsoft.DocumentDB/databaseAccounts"),
        "{errors}"
    );
    let preview = broken(&t, "\"apiVersion\":\"2023-01-01\"", "\"apiVersion\":\"2021-09-01-preview\"");
    assert!(errors_of(&preview, today()).contains("uses a preview version (2021-09-01-preview)"));
    let unknown =
        broken(&t, "\"type\":\"Microsoft.Insights/actionGroups\"", "\"type\":\"Microsoft.Insights/actionGroupz\"");
    assert!(
        errors_of(&unknown, today())
            .contains("Microsoft.Insights/actionGroupz is not in tests/fixtures/arm-api-versions.json")
    );
}

#[test]
fn blanks_hardcoded_hosts_locations_secrets_and_concatenated_uris_fail() {
    let t = template();
    let cases = [
        ("\"indexingMode\":\"none\"", "\"indexingMode\":\"none\",\"includedPaths\":[]", "Empty property: .resources"),
        ("\"groupShortName\":\"presence\"", "\"groupShortName\":\"\"", "groupShortName"),
        (
            "\"logLevel\":\"info\"",
            "\"logLevel\":\"info\",\"mirror\":\"https://x.blob.core.windows.net/p.zip\"",
            "hardcoded reference to core.windows.net",
        ),
        ("\"location\":\"Global\"", "\"location\":\"westeurope\"", "must be an expression or 'global'"),
        (
            "\"value\":\"[variables('functionAppName')]\"",
            "\"value\":\"[resourceGroup().location]\"",
            "not resourcegroup().location",
        ),
        (
            "\"cosmosEndpoint\":{",
            "\"storageKey\":{\"type\":\"string\",\"value\":\"[listKeys(variables('storageAccountId'), '2025-01-01').keys[0].value]\"},\"cosmosEndpoint\":{",
            "Output contains secret: storageKey",
        ),
        (
            "\"packageUri\":\"[variables('functionPackageUri')]\"",
            "\"packageUri\":\"[concat(parameters('_artifactsLocation'), 'function-package.zip')]\"",
            "outside uri()",
        ),
        (
            "\"defaultValue\":\"[deployment().properties.templateLink.uri]\"",
            "\"defaultValue\":\"https://example.org/\"",
            "_artifactsLocation has an incorrect defaultValue",
        ),
    ];
    for (from, to, expected) in cases {
        let errors = errors_of(&broken(&t, from, to), today());
        assert!(errors.contains(expected), "{from} -> {to}: expected {expected:?} in:\n{errors}");
    }
    let mut sas_default = t.clone();
    sas_default["parameters"]["_artifactsLocationSasToken"]["defaultValue"] = json!("?sig=x");
    assert!(errors_of(&sas_default, today()).contains("must not have a default value"));
}

#[test]
fn form_problems_fail() {
    let (ui, t) = (form(), template());
    let cases = [
        ("\"handler\":\"Microsoft.Azure.CreateUIDef\"", "\"handler\":\"Custom\"", "The handler must be"),
        ("\"location\":\"[location()]\"", "\"location\":\"westeurope\"", "outputs.location must be [location()]"),
        (
            "\"alertEmail\":\"[steps('operations').alertEmail]\"",
            "\"alertMail\":\"[steps('operations').alertEmail]\"",
            "output alertMail does not exist",
        ),
        (
            "\"alertEmail\":\"[steps('operations').alertEmail]\"",
            "\"alertEmail\":\"[steps('operations').alertMail]\"",
            "could not find element 'alertMail'",
        ),
        (
            "\"regex\":\"^[^@\\\\s]+@[^@\\\\s]+\\\\.[^@\\\\s]+$\",",
            "",
            "Textbox alertEmail is missing constraints.regex",
        ),
        (
            "\"validationMessage\":\"Enter one e-mail address, such as ops@contoso.com.\"",
            "\"validationMessage\":\"\"",
            "Empty property",
        ),
    ];
    for (from, to, expected) in cases {
        let errors = form_rules(&broken(&ui, from, to), &t).join("\n");
        assert!(errors.contains(expected), "{from} -> {to}: expected {expected:?} in:\n{errors}");
    }
    // A tooltip removed from a slider, and a template parameter without default the form lacks.
    let mut no_tip = ui.clone();
    no_tip["parameters"]["steps"][0]["elements"][1]["toolTip"] = json!(" ");
    assert!(form_rules(&no_tip, &t).join("\n").contains("Element missing tooltip: retentionDays"));
    let mut more = t.clone();
    more["parameters"]["tenantName"] = json!({ "type": "string" });
    assert!(form_rules(&ui, &more).join("\n").contains("tenantName does not have a default value"));
}
