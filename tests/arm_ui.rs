//! The Managed Application's form (createUiDefinition.json) and its overview (viewDefinition.json).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use teams_presence::config::parse_groups;

fn read_json(path: &str) -> Value {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", full.display()))
}

/// Outputs the Managed Applications service consumes itself rather than passing to the template
/// (ARM-TTK's Outputs-Must-Be-Present-In-Template-Parameters exempts exactly these).
const MANAGED_APP_OUTPUTS: &[&str] =
    &["applicationResourceName", "jitAccessPolicy", "managedIdentity", "managedResourceGroupId"];

/// Template parameters the form does not ask for, each with the reason.
const NOT_IN_THE_FORM: &[(&str, &str)] = &[
    ("_artifactsLocation", "where app.zip was staged: deployment().properties.templateLink.uri"),
    ("_artifactsLocationSasToken", "only for a deployment from a private container (az deployment group create)"),
    ("packageUriOverride", "the documented fallback, set by the publisher at packaging time, never by a customer"),
];

/// The form element an output expression `[steps('step').element]` points at.
fn element<'a>(ui: &'a Value, expression: &str) -> &'a Value {
    let inner = expression.strip_prefix("[steps('").and_then(|e| e.strip_suffix(']')).unwrap_or_else(|| {
        panic!("output {expression:?} is not [steps('step').element]");
    });
    let (step, element) = inner.split_once("').").unwrap();
    let step = ui["parameters"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == step)
        .unwrap_or_else(|| panic!("{expression}: no step {step:?}"));
    step["elements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == element)
        .unwrap_or_else(|| panic!("{expression}: step has no element {element:?}"))
}

#[test]
fn the_form_outputs_exactly_the_template_parameters_each_from_an_explained_element() {
    let ui = read_json("arm/createUiDefinition.json");
    let template = read_json("arm/mainTemplate.json");
    assert_eq!(ui["handler"], "Microsoft.Azure.CreateUIDef");
    assert_eq!(ui["version"], "0.1.2-preview");

    let outputs = ui["parameters"]["outputs"].as_object().unwrap();
    let output_names: BTreeSet<&str> =
        outputs.keys().map(String::as_str).filter(|n| !MANAGED_APP_OUTPUTS.contains(n)).collect();
    let parameter_names: BTreeSet<&str> =
        template["parameters"].as_object().unwrap().keys().map(String::as_str).collect();
    let not_asked: BTreeSet<&str> = NOT_IN_THE_FORM.iter().map(|(n, _)| *n).collect();
    assert_eq!(output_names, parameter_names.difference(&not_asked).copied().collect());
    for (name, _) in NOT_IN_THE_FORM {
        assert!(
            template["parameters"][name].get("defaultValue").is_some(),
            "{name} needs a default: the form never sets it"
        );
    }

    for (name, expression) in outputs {
        let expression = expression.as_str().unwrap();
        if name == "location" {
            assert_eq!(expression, "[location()]");
            continue;
        }
        if name == "jitAccessPolicy" {
            continue;
        }
        let element = element(&ui, expression);
        let tip = element["toolTip"].as_str().unwrap_or_default();
        assert!(tip.len() > 30, "{name}: the element needs help text, got {tip:?}");
        assert!(element["label"].as_str().is_some_and(|l| !l.is_empty()), "{name}: no label");

        // A slider's bounds and default must be the template's, or the form would offer values
        // the deployment rejects.
        let spec = &template["parameters"][name];
        if element["type"] == "Microsoft.Common.Slider" {
            assert_eq!(spec["type"], "int", "{name}");
            assert_eq!(element["min"], spec["minValue"], "{name} min");
            assert_eq!(element["max"], spec["maxValue"], "{name} max");
            assert_eq!(element["defaultValue"], spec["defaultValue"], "{name} default");
        } else {
            assert_eq!(element["type"], "Microsoft.Common.TextBox", "{name}");
            assert_eq!(spec["type"], "string", "{name}");
            assert_eq!(element["constraints"]["required"], true, "{name}");
        }
    }
}

/// Runs the form's regex (JavaScript syntax; these constructs mean the same in Python) on inputs.
fn regex_matches(pattern: &str, inputs: &[&str]) -> Vec<bool> {
    let script = "import json, re, sys\n\
                  p = re.compile(sys.argv[1])\n\
                  print(json.dumps([bool(p.search(s)) for s in json.loads(sys.stdin.read())]))";
    let mut child = Command::new("python3")
        .args(["-c", script, pattern])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the form's regular expressions");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(serde_json::to_string(inputs).unwrap().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn the_group_field_accepts_what_the_binary_accepts_and_nothing_else() {
    let ui = read_json("arm/createUiDefinition.json");
    let field = element(&ui, ui["parameters"]["outputs"]["entraGroupIds"].as_str().unwrap());
    let pattern = field["constraints"]["regex"].as_str().unwrap();
    assert!(field["constraints"]["validationMessage"].as_str().unwrap().contains("GUID"));

    let a = "6f1c2a3b-0d4e-4f5a-8b6c-7d8e9f0a1b2c";
    let b = "0A1B2C3D-4E5F-4A6B-8C7D-8E9F0A1B2C3D";
    let accepted = [
        a.to_string(),
        format!("{a},{b}"),
        format!(" {a} , {b} "),
        format!("{a};{b}"),
        format!("{a} {b}"),
        format!("{{{a}}},{b}"),
        format!("{a},"),
    ];
    let rejected = [
        String::new(),
        " , ".to_string(),
        "not-a-guid".to_string(),
        format!("{a},nope"),
        a.replace('-', ""),
        format!("{a}{b}"),
        format!("{a},{}", &b[..35]),
        format!("{a}x"),
    ];
    let inputs: Vec<&str> = accepted.iter().chain(&rejected).map(String::as_str).collect();
    let verdicts = regex_matches(pattern, &inputs);
    for (input, form_accepts) in inputs.iter().zip(verdicts) {
        let binary_accepts = parse_groups(Some(input)).is_ok();
        assert_eq!(form_accepts, binary_accepts, "form and binary disagree on {input:?}");
        assert_eq!(form_accepts, accepted.iter().any(|a| a == input), "{input:?}");
    }
}

#[test]
fn the_email_field_rejects_obvious_mistakes_and_no_field_asks_for_code() {
    let ui = read_json("arm/createUiDefinition.json");
    let outputs = &ui["parameters"]["outputs"];
    let email = element(&ui, outputs["alertEmail"].as_str().unwrap())["constraints"]["regex"].as_str().unwrap();
    assert_eq!(
        regex_matches(email, &["ops@contoso.com", "ops@contoso", "ops contoso.com", "a@b.c d", "@contoso.com"]),
        [true, false, false, false, false]
    );
    // A package URL a buyer types could deploy any code into an app the publisher manages.
    let text = ui.to_string().to_lowercase();
    for word in ["packageuri", "package url", "function-package.zip"] {
        assert!(!text.contains(word), "the form mentions {word}");
    }
}

/// Just-in-time access is offered for anything beyond Reader (docs: request-just-in-time-access,
/// "Add JIT access step to UI"), and the step says what turning it off would mean.
#[test]
fn the_form_offers_just_in_time_access_and_explains_the_publishers_reader_role() {
    let ui = read_json("arm/createUiDefinition.json");
    let output = ui["parameters"]["outputs"]["jitAccessPolicy"].as_str().unwrap();
    assert_eq!(output, "[steps('jitConfiguration').jitConfigurationControl]");
    let control = element(&ui, output);
    assert_eq!(control["type"], "Microsoft.Solutions.JitConfigurator");
    let step = ui["parameters"]["steps"].as_array().unwrap().iter().find(|s| s["name"] == "jitConfiguration").unwrap();
    let info = step["elements"].as_array().unwrap().iter().find(|e| e["type"] == "Microsoft.Common.InfoBox").unwrap();
    let text = info["options"]["text"].as_str().unwrap();
    for needed in ["only the Reader role", "you approve", "manual approval", "permanently", "Entra ID P2"] {
        assert!(text.contains(needed), "the JIT step does not say {needed:?}: {text}");
    }
}

#[test]
fn the_overview_tells_the_admin_the_one_post_install_step() {
    let view = read_json("arm/viewDefinition.json");
    let overview =
        view["views"].as_array().unwrap().iter().find(|v| v["kind"] == "Overview").expect("an Overview view");
    let text = overview["properties"]["description"].as_str().unwrap();
    // The script is published with each release beside app.zip (scripts/package.sh puts both in dist/).
    for needed in [
        "grant-graph-permissions.sh --principal-id",
        "beside its app.zip",
        "only the Reader role",
        "ENTRA_GROUP_IDS",
        "one parent group",
        "Presence.Read.All",
        "GroupMember.Read.All",
        "principalId",
    ] {
        assert!(text.contains(needed), "the overview does not mention {needed}: {text}");
    }
    assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/grant-graph-permissions.sh").exists());
}
