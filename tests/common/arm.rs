//! A small evaluator of ARM template expressions (`"[...]"` strings), for tests with no Azure.
//!
//! It parses each expression, evaluates what can be known before deployment (parameters,
//! variables, names, resource ids, `guid`, `uniqueString`, string and number functions) and turns
//! what only exists at deployment time (`reference(...)`) into a [`Val::Runtime`] placeholder.
//! Every `parameters('x')`, `variables('x')`, `resourceId(...)`, `reference(...)` and `dependsOn`
//! target is checked against what the template declares; unknown functions and the `list*`
//! functions (which return keys and connection strings) are errors, so nothing is skipped silently.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};
use uuid::Uuid;

pub const SUBSCRIPTION_ID: &str = "00000000-0000-0000-0000-0000000000aa";
pub const RESOURCE_GROUP: &str = "rg-presence";
pub const RG_LOCATION: &str = "westeurope";

/// Child resource types that exist without being declared, with why.
pub const BUILT_IN_CHILDREN: &[(&str, &str)] = &[(
    "Microsoft.DocumentDB/databaseAccounts/sqlRoleDefinitions",
    "every Cosmos DB account has the built-in data-plane roles (…0001 reader, …0002 contributor)",
)];

/// A parsed expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Str(String),
    Int(i64),
    Call(String, Vec<Expr>),
    Prop(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
}

/// A value: known JSON, or a description of a value that only exists once deployed.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Json(Value),
    Runtime(String),
}

impl Val {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Val::Json(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// The value as text; a runtime value becomes `<runtime:...>`.
    pub fn render(&self) -> String {
        match self {
            Val::Json(Value::String(s)) => s.clone(),
            Val::Json(v) => v.to_string(),
            Val::Runtime(r) => format!("<runtime:{r}>"),
        }
    }

    fn into_json(self) -> Value {
        match self {
            Val::Json(v) => v,
            r @ Val::Runtime(_) => Value::String(r.render()),
        }
    }
}

/// Whether a JSON string is an ARM expression (`[[` escapes a literal bracket).
pub fn is_expression(s: &str) -> bool {
    s.starts_with('[') && s.ends_with(']') && !s.starts_with("[[")
}

// ---------------------------------------------------------------------------------------------
// Parsing

pub fn parse(text: &str) -> Result<Expr, String> {
    let mut p = Parser { chars: text.chars().collect(), pos: 0 };
    let expr = p.expr()?;
    p.skip_ws();
    if p.pos != p.chars.len() {
        return Err(format!("unexpected {:?} at {} in {text:?}", p.rest(), p.pos));
    }
    Ok(expr)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn rest(&self) -> String {
        self.chars[self.pos..].iter().collect()
    }

    fn skip_ws(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.chars.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Result<Expr, String> {
        let mut expr = self.primary()?;
        loop {
            if self.eat('.') {
                expr = Expr::Prop(Box::new(expr), self.ident()?);
            } else if self.eat('[') {
                let index = self.expr()?;
                if !self.eat(']') {
                    return Err(format!("expected ] at {}", self.pos));
                }
                expr = Expr::Index(Box::new(expr), Box::new(index));
            } else {
                return Ok(expr);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        self.skip_ws();
        match self.chars.get(self.pos) {
            Some('\'') => self.string(),
            Some(c) if c.is_ascii_digit() || *c == '-' => self.number(),
            Some(c) if c.is_alphabetic() => {
                let name = self.ident()?;
                if !self.eat('(') {
                    return Err(format!("expected ( after {name}"));
                }
                let mut args = Vec::new();
                if !self.eat(')') {
                    loop {
                        args.push(self.expr()?);
                        if self.eat(')') {
                            break;
                        }
                        if !self.eat(',') {
                            return Err(format!("expected , or ) in the arguments of {name} at {}", self.pos));
                        }
                    }
                }
                Ok(Expr::Call(name, args))
            }
            other => Err(format!("unexpected {other:?} at {}", self.pos)),
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        self.skip_ws();
        let start = self.pos;
        while self.chars.get(self.pos).is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == '$') {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(format!("expected a name at {start}"));
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    fn string(&mut self) -> Result<Expr, String> {
        self.pos += 1; // opening quote
        let mut s = String::new();
        loop {
            match self.chars.get(self.pos) {
                None => return Err("unterminated string".into()),
                Some('\'') if self.chars.get(self.pos + 1) == Some(&'\'') => {
                    s.push('\'');
                    self.pos += 2;
                }
                Some('\'') => {
                    self.pos += 1;
                    return Ok(Expr::Str(s));
                }
                Some(c) => {
                    s.push(*c);
                    self.pos += 1;
                }
            }
        }
    }

    fn number(&mut self) -> Result<Expr, String> {
        let start = self.pos;
        self.pos += 1;
        while self.chars.get(self.pos).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        text.parse().map(Expr::Int).map_err(|_| format!("bad number {text:?}"))
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/// Evaluates one template with the given parameter values, collecting every problem.
pub struct Evaluator<'t> {
    template: &'t Value,
    parameters: BTreeMap<String, Value>,
    /// `type|name` keys of the declared resources, lower-case.
    declared: HashSet<String>,
    errors: RefCell<Vec<String>>,
    expressions: RefCell<usize>,
    evaluating: RefCell<Vec<String>>,
    /// `deployment().properties.templateLink.uri`: set when the template is deployed from a URL
    /// (the Managed Applications service, `--template-uri`); absent for a local file.
    template_link: Option<String>,
}

impl<'t> Evaluator<'t> {
    pub fn new(template: &'t Value, parameters: BTreeMap<String, Value>) -> Self {
        let mut this = Evaluator {
            template,
            parameters,
            declared: HashSet::new(),
            errors: RefCell::new(Vec::new()),
            expressions: RefCell::new(0),
            evaluating: RefCell::new(Vec::new()),
            template_link: None,
        };
        let mut declared = HashSet::new();
        for resource in this.resources() {
            let ty = resource["type"].as_str().unwrap_or_default();
            let name = this.eval_value(&resource["name"], "resource name").render();
            declared.insert(key(ty, &name));
        }
        this.declared = declared;
        // Names were evaluated before the declared set existed; `check_all` evaluates them again.
        this.errors.borrow_mut().clear();
        *this.expressions.borrow_mut() = 0;
        this
    }

    /// Deploys as if the template had been fetched from `uri`, as ARM does for a linked template.
    pub fn with_template_link(mut self, uri: &str) -> Self {
        self.template_link = Some(uri.to_string());
        self
    }

    pub fn resources(&self) -> Vec<&'t Value> {
        self.template["resources"].as_array().map(|a| a.iter().collect()).unwrap_or_default()
    }

    pub fn errors(&self) -> Vec<String> {
        self.errors.borrow().clone()
    }

    pub fn expressions_evaluated(&self) -> usize {
        *self.expressions.borrow()
    }

    fn error(&self, message: String) {
        self.errors.borrow_mut().push(message);
    }

    /// Evaluates every expression in the template (parameter defaults, variables, resources
    /// except nested deployment templates, outputs) and checks every `dependsOn` target.
    pub fn check_all(&self) {
        if let Some(params) = self.template["parameters"].as_object() {
            for (name, spec) in params {
                if let Some(default) = spec.get("defaultValue") {
                    self.eval_value(default, &format!("parameters.{name}.defaultValue"));
                }
            }
        }
        if let Some(vars) = self.template["variables"].as_object() {
            for name in vars.keys() {
                self.variable(name);
            }
        }
        for (i, resource) in self.resources().into_iter().enumerate() {
            let mut resource = resource.clone();
            let is_deployment = resource["type"].as_str() == Some("Microsoft.Resources/deployments");
            if let (true, Some(props)) = (is_deployment, resource.get_mut("properties").and_then(Value::as_object_mut))
            {
                // A nested template has its own scope; ours are empty (attribution only).
                props.remove("template");
            }
            let depends_on = resource.as_object_mut().and_then(|r| r.remove("dependsOn"));
            self.eval_value(&resource, &format!("resources[{i}]"));
            for target in depends_on.as_ref().and_then(Value::as_array).into_iter().flatten() {
                let target = self.eval_value(target, &format!("resources[{i}].dependsOn"));
                match target.as_str() {
                    Some(id) if self.declared.contains(&key_of(id)) => {}
                    _ => self.error(format!("resources[{i}].dependsOn: {} is not declared", target.render())),
                }
            }
        }
        if let Some(outputs) = self.template["outputs"].as_object() {
            for (name, output) in outputs {
                self.eval_value(output, &format!("outputs.{name}"));
            }
        }
    }

    /// Evaluates a JSON value, replacing each expression string by its value.
    pub fn eval_value(&self, value: &Value, at: &str) -> Val {
        match value {
            Value::String(s) if is_expression(s) => {
                *self.expressions.borrow_mut() += 1;
                match parse(&s[1..s.len() - 1]) {
                    Ok(expr) => self.eval(&expr, at),
                    Err(e) => {
                        self.error(format!("{at}: cannot parse {s:?}: {e}"));
                        Val::Runtime("error".into())
                    }
                }
            }
            Value::String(s) if s.starts_with("[[") => Val::Json(Value::String(s[1..].to_string())),
            Value::Array(items) => Val::Json(Value::Array(
                items.iter().enumerate().map(|(i, v)| self.eval_value(v, &format!("{at}[{i}]")).into_json()).collect(),
            )),
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    out.insert(k.clone(), self.eval_value(v, &format!("{at}.{k}")).into_json());
                }
                Val::Json(Value::Object(out))
            }
            other => Val::Json(other.clone()),
        }
    }

    pub fn parameter(&self, name: &str) -> Val {
        let Some(spec) = self.template["parameters"].get(name) else {
            self.error(format!("parameters('{name}') is not declared"));
            return Val::Runtime(format!("missing parameter {name}"));
        };
        if let Some(value) = self.parameters.get(name) {
            return Val::Json(value.clone());
        }
        match spec.get("defaultValue") {
            Some(default) => self.eval_value(default, &format!("parameters.{name}.defaultValue")),
            None => {
                self.error(format!("parameter {name} has no value and no default"));
                Val::Runtime(format!("unset parameter {name}"))
            }
        }
    }

    pub fn variable(&self, name: &str) -> Val {
        let Some(value) = self.template["variables"].get(name) else {
            self.error(format!("variables('{name}') is not declared"));
            return Val::Runtime(format!("missing variable {name}"));
        };
        if self.evaluating.borrow().iter().any(|v| v == name) {
            self.error(format!("variables('{name}') refers to itself"));
            return Val::Runtime(format!("cyclic variable {name}"));
        }
        self.evaluating.borrow_mut().push(name.to_string());
        let result = self.eval_value(value, &format!("variables.{name}"));
        self.evaluating.borrow_mut().pop();
        result
    }

    fn eval(&self, expr: &Expr, at: &str) -> Val {
        match expr {
            Expr::Str(s) => Val::Json(Value::String(s.clone())),
            Expr::Int(n) => Val::Json(Value::from(*n)),
            Expr::Prop(inner, prop) => match self.eval(inner, at) {
                Val::Runtime(r) => Val::Runtime(format!("{r}.{prop}")),
                Val::Json(v) => match v.get(prop) {
                    Some(p) => Val::Json(p.clone()),
                    None => {
                        self.error(format!("{at}: no property {prop:?} in {v}"));
                        Val::Runtime(format!("missing .{prop}"))
                    }
                },
            },
            Expr::Index(inner, index) => match (self.eval(inner, at), self.eval(index, at)) {
                (Val::Json(v), Val::Json(i)) => {
                    let item = match &i {
                        Value::Number(n) => n.as_u64().and_then(|n| v.get(n as usize)),
                        Value::String(s) => v.get(s),
                        _ => None,
                    };
                    item.cloned().map(Val::Json).unwrap_or_else(|| {
                        self.error(format!("{at}: no item {i} in {v}"));
                        Val::Runtime("missing item".into())
                    })
                }
                (a, b) => Val::Runtime(format!("{}[{}]", a.render(), b.render())),
            },
            Expr::Call(name, args) => self.call(name, args, at),
        }
    }

    fn call(&self, name: &str, args: &[Expr], at: &str) -> Val {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("list") {
            self.error(format!("{at}: {name}() returns keys or secrets; the template must not use it"));
            return Val::Runtime(format!("{name}()"));
        }
        let values: Vec<Val> = args.iter().map(|a| self.eval(a, at)).collect();
        let text = |i: usize| values.get(i).map(Val::render).unwrap_or_default();
        let int = |i: usize| values.get(i).and_then(|v| if let Val::Json(v) = v { v.as_i64() } else { None });
        let any_runtime = values.iter().any(|v| matches!(v, Val::Runtime(_)));
        let string = |s: String| Val::Json(Value::String(s));
        match lower.as_str() {
            "parameters" => self.parameter(&text(0)),
            "variables" => self.variable(&text(0)),
            "concat" if any_runtime => Val::Runtime(values.iter().map(Val::render).collect()),
            "concat" => string(values.iter().map(Val::render).collect()),
            "format" => {
                let mut out = text(0);
                for i in 1..values.len() {
                    out = out.replace(&format!("{{{}}}", i - 1), &text(i));
                }
                if any_runtime { Val::Runtime(out) } else { string(out) }
            }
            "string" if any_runtime => Val::Runtime(text(0)),
            "string" => string(text(0)),
            "tolower" => string(text(0).to_lowercase()),
            "take" => string(text(0).chars().take(int(1).unwrap_or(0) as usize).collect()),
            "mul" | "add" | "sub" | "div" => match (int(0), int(1)) {
                (Some(a), Some(b)) => Val::Json(Value::from(match lower.as_str() {
                    "mul" => a * b,
                    "add" => a + b,
                    "sub" => a - b,
                    _ => a / b,
                })),
                _ => {
                    self.error(format!("{at}: {name} needs two integers, got {} and {}", text(0), text(1)));
                    Val::Runtime(name.into())
                }
            },
            "uniquestring" => string(
                Uuid::new_v5(&Uuid::NAMESPACE_OID, joined(&values).as_bytes()).simple().to_string()[..13].to_string(),
            ),
            "guid" => string(Uuid::new_v5(&Uuid::NAMESPACE_URL, joined(&values).as_bytes()).to_string()),
            "resourcegroup" => Val::Json(serde_json::json!({
                "id": format!("/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}"),
                "name": RESOURCE_GROUP,
                "location": RG_LOCATION,
            })),
            "subscription" => Val::Json(serde_json::json!({
                "id": format!("/subscriptions/{SUBSCRIPTION_ID}"),
                "subscriptionId": SUBSCRIPTION_ID,
            })),
            "resourceid" => {
                let id =
                    resource_id(&format!("/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{RESOURCE_GROUP}"), &values);
                self.require_declared(&id, at, name);
                string(id)
            }
            "subscriptionresourceid" => string(resource_id(&format!("/subscriptions/{SUBSCRIPTION_ID}"), &values)),
            "extensionresourceid" => {
                let id = resource_id(&text(0), &values[1.min(values.len())..]);
                self.require_declared(&id, at, name);
                string(id)
            }
            // https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions-deployment#deployment
            "deployment" => {
                let mut properties = serde_json::json!({ "mode": "Incremental" });
                if let Some(uri) = &self.template_link {
                    properties["templateLink"] = serde_json::json!({ "uri": uri });
                }
                Val::Json(serde_json::json!({ "name": "mainTemplate", "properties": properties }))
            }
            "uri" if any_runtime => Val::Runtime(format!("uri({}, {})", text(0), text(1))),
            "uri" => match resolve_uri(&text(0), &text(1)) {
                Ok(uri) => string(uri),
                Err(e) => {
                    self.error(format!("{at}: {e}"));
                    Val::Runtime("bad uri".into())
                }
            },
            "empty" => match values.first() {
                Some(Val::Json(v)) => Val::Json(Value::Bool(match v {
                    Value::Null => true,
                    Value::String(s) => s.is_empty(),
                    Value::Array(a) => a.is_empty(),
                    Value::Object(o) => o.is_empty(),
                    _ => false,
                })),
                _ => Val::Runtime("empty()".into()),
            },
            "if" => match values.first() {
                Some(Val::Json(Value::Bool(condition))) => {
                    values.get(if *condition { 1 } else { 2 }).cloned().unwrap_or(Val::Runtime("if()".into()))
                }
                _ => {
                    self.error(format!("{at}: if() needs a boolean condition, got {}", text(0)));
                    Val::Runtime("if()".into())
                }
            },
            "reference" => {
                let target = text(0);
                let id = if target.contains("/providers/") { target } else { self.declared_by_name(&target, at) };
                self.require_declared(&id, at, name);
                Val::Runtime(format!("reference({})", key_of(&id)))
            }
            other => {
                self.error(format!("{at}: function {other}() is not known to the test evaluator"));
                Val::Runtime(format!("{name}()"))
            }
        }
    }

    fn require_declared(&self, id: &str, at: &str, function: &str) {
        let key = key_of(id);
        if let Some((ty, name)) = key.split_once('|')
            && BUILT_IN_CHILDREN.iter().any(|(t, _)| t.eq_ignore_ascii_case(ty))
        {
            // Exists with its parent; the parent must be declared.
            let parent_ty = &ty[..ty.rfind('/').unwrap_or(0)];
            let parent_name = &name[..name.rfind('/').unwrap_or(0)];
            if !self.declared.contains(&format!("{parent_ty}|{parent_name}")) {
                self.error(format!("{at}: {function}() refers to {id}, whose parent the template does not declare"));
            }
            return;
        }
        if !self.declared.contains(&key) {
            self.error(format!("{at}: {function}() refers to {id}, which the template does not declare"));
        }
    }

    /// `reference('name')` names a resource of this template by its name alone.
    fn declared_by_name(&self, name: &str, at: &str) -> String {
        let suffix = format!("|{}", name.to_lowercase());
        match self.declared.iter().find(|k| k.ends_with(&suffix)) {
            Some(k) => {
                let (ty, name) = k.split_once('|').unwrap_or_default();
                let (ns, rest) = ty.split_once('/').unwrap_or_default();
                format!("/providers/{ns}/{rest}/{name}")
            }
            None => {
                self.error(format!("{at}: reference('{name}') names no declared resource"));
                String::new()
            }
        }
    }
}

/// ARM's `uri(baseUri, relativeUri)`: a base ending in `/` is followed by the relative part;
/// otherwise everything from the base's last `/` on (its query string included) is dropped
/// first. https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions-string#uri
pub fn resolve_uri(base: &str, relative: &str) -> Result<String, String> {
    let Some((scheme, rest)) = base.split_once("://") else {
        return Err(format!("uri(): {base:?} is not an absolute URI"));
    };
    if base.ends_with('/') {
        return Ok(format!("{base}{relative}"));
    }
    match rest.rfind('/') {
        Some(i) => Ok(format!("{scheme}://{}/{relative}", &rest[..i])),
        None => Ok(format!("{base}/{relative}")),
    }
}

fn joined(values: &[Val]) -> String {
    values.iter().map(Val::render).collect::<Vec<_>>().join("|")
}

/// `scope/providers/Ns/type1/name1/type2/name2...` from a type and its name segments.
fn resource_id(scope: &str, values: &[Val]) -> String {
    let texts: Vec<String> = values.iter().map(Val::render).collect();
    let Some(pos) = texts.iter().position(|t| t.contains('/')) else {
        return format!("{scope}/providers/<no type in {texts:?}>");
    };
    let ty = &texts[pos];
    let names = &texts[pos + 1..];
    let mut segments = ty.split('/');
    let ns = segments.next().unwrap_or_default();
    let mut id = format!("{scope}/providers/{ns}");
    for (i, seg) in segments.enumerate() {
        id.push_str(&format!("/{seg}/{}", names.get(i).map(String::as_str).unwrap_or("<missing name>")));
    }
    id
}

/// `type|name` key (lower-case) of a declared resource.
pub fn key(ty: &str, name: &str) -> String {
    format!("{}|{}", ty, name).to_lowercase()
}

/// `type|name` key of a resource id (the last `/providers/` part, so extension resources work).
pub fn key_of(id: &str) -> String {
    let Some((_, tail)) = id.rsplit_once("/providers/") else {
        return format!("<not a resource id: {id}>");
    };
    let parts: Vec<&str> = tail.split('/').collect();
    let ns = parts.first().copied().unwrap_or_default();
    let mut types = vec![ns.to_string()];
    let mut names = Vec::new();
    for pair in parts[1..].chunks(2) {
        types.push(pair[0].to_string());
        names.push(pair.get(1).copied().unwrap_or_default().to_string());
    }
    key(&types.join("/"), &names.join("/"))
}

// ---------------------------------------------------------------------------------------------
// The repository's templates, for the arm_* tests

pub const GROUP_A: &str = "11111111-1111-4111-8111-111111111111";
pub const GROUP_B: &str = "22222222-2222-4222-8222-222222222222";

pub fn read_json(path: &str) -> Value {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", full.display()))
}

pub fn template() -> Value {
    read_json("arm/mainTemplate.json")
}

/// Values an admin would give the parameters without defaults.
pub fn sample_parameters() -> BTreeMap<String, Value> {
    BTreeMap::from([
        ("entraGroupIds".to_string(), serde_json::json!(format!("{GROUP_A},{GROUP_B}"))),
        ("alertEmail".to_string(), serde_json::json!("ops@contoso.example")),
        ("retentionDays".to_string(), serde_json::json!(30)),
    ])
}

/// Where the Managed Applications service stages app.zip in these tests: the template's
/// `deployment().properties.templateLink.uri`.
pub const STAGED_TEMPLATE: &str =
    "https://stage.contoso.example/applicationDefinitions/0001/mainTemplate.json?sv=2024-11-04&sig=abc%2Fd";

/// An evaluator of the repository's template with the sample parameters, deployed from a link.
pub fn linked_evaluator(template: &Value) -> Evaluator<'_> {
    Evaluator::new(template, sample_parameters()).with_template_link(STAGED_TEMPLATE)
}

pub fn resources_of<'a>(template: &'a Value, ty: &str) -> Vec<&'a Value> {
    template["resources"].as_array().unwrap().iter().filter(|r| r["type"] == ty).collect()
}

pub fn one_of<'a>(template: &'a Value, ty: &str) -> &'a Value {
    let found = resources_of(template, ty);
    assert_eq!(found.len(), 1, "expected exactly one {ty}");
    found[0]
}

/// A value that must be known before deployment.
pub fn evaluated(eval: &Evaluator, value: &Value, at: &str) -> Value {
    match eval.eval_value(value, at) {
        Val::Json(v) => v,
        other => panic!("{at} is not known before deployment: {other:?}"),
    }
}
