//! Which variables a SavedModel stores, and which of them are optimizer state.
//!
//! # Where the variables come from
//!
//! TF2 SavedModels carry an object graph (`SavedObjectGraph`): every saved Python object, the
//! attribute names linking them, and one node per stored variable with its name, dtype, shape
//! and trainability. That is what `tf.saved_model.load` restores, so it is the list used here.
//! The graph's own variable ops are not: a TF2 graph holds extra `VarHandleOp`s for restoring
//! (a Keras 3 export with 4 weights has 12). Only TF1 SavedModels, which have no object graph,
//! are read from their `VariableV2`/`VarHandleOp` ops.
//!
//! # How optimizer state is recognised
//!
//! Checked against SavedModels written by TF 2.21 with Keras 3 and tf_keras, with and without
//! an optimizer (see `tests/integration/native.rs`). An object of the object graph is an
//! *optimizer* when any of these holds:
//!
//! | evidence | written by |
//! |---|---|
//! | it has `slot_variables` | TF's slot mechanism: tf_keras legacy optimizers (`tf_keras.optimizers.legacy.*`), `tf.compat.v1` optimizers |
//! | its identifier is `optimizer` or `experimentalOptimizer` | tf_keras legacy and current optimizers |
//! | it has an `_iterations` scalar integer variable and a `_variables` list | Keras 3 and current tf_keras optimizers (Keras 3 saves them as `_generic_user_object`, so only their structure identifies them) |
//!
//! Neither Keras 3 nor current tf_keras optimizers use `slot_variables` (their momentums live
//! in plain lists such as `_momentums`), so looking at `slot_variables` alone, or at the
//! checkpoint's `_CHECKPOINTABLE_OBJECT_GRAPH` (the same information), misses them.
//!
//! The optimizer's variables are those reachable from an optimizer object (through attributes
//! and slot references) but not from the root without passing through one: Keras 3 optimizers
//! also hold the model's own weights (`_trainable_variables`), which stay model weights because
//! the model reaches them directly. Per-weight state (non-scalar, or named by a slot reference)
//! is reported as a *slot*; scalars (iteration counter, learning rate, β₁ …) as *state*.
//!
//! TF1 SavedModels have no object graph: there, a variable whose last name component is a TF1
//! optimizer's slot suffix (`Adam`, `Adam_1`, `Momentum`, `RMSProp`, …) or `beta1_power` /
//! `beta2_power` counts. Names are a weaker signal, so this is only used when there is no
//! object graph.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use super::dtype::DType;
use super::saved_model_pb::{MetaGraph, ObjectGraph, ObjectKind};

/// The variables of one meta graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Variables {
    /// `object-graph` (TF2) or `graph` (TF1, from the graph's variable ops).
    pub source: &'static str,
    pub count: usize,
    pub trainable: usize,
    /// Elements over all variables of known shape.
    pub parameters: u64,
    /// `parameters` × element size.
    pub bytes: u64,
    /// Variables whose size is unknown (a dynamic shape or a variable-size dtype).
    pub unknown_size: usize,
    /// Names held by more than one variable of the same dtype and shape: the same weight
    /// stored twice (Keras 3's `model.export()` saves each weight under two names).
    pub repeated_names: Vec<String>,
    pub list: Vec<VariableInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariableInfo {
    /// The variable's name (`dense/kernel`).
    pub name: String,
    /// Where it hangs in the object graph (`layer_with_weights-0/kernel`), as checkpoint
    /// keys spell it; `None` in TF1 graphs.
    pub path: Option<String>,
    pub dtype: DType,
    pub shape: Option<Vec<i64>>,
    /// Unknown (`None`) in TF1 graphs.
    pub trainable: Option<bool>,
    pub bytes: Option<u64>,
    /// Part of the optimizer's state.
    pub optimizer: bool,
}

/// Optimizer state found among the variables.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptimizerState {
    pub present: bool,
    /// The optimizer objects (paths) and why each was recognised as one.
    pub objects: Vec<OptimizerObject>,
    pub variables: Vec<OptimizerVariable>,
    /// How many of `variables` are per-weight slots.
    pub slots: usize,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptimizerObject {
    pub path: String,
    pub evidence: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptimizerVariable {
    pub name: String,
    pub path: Option<String>,
    /// `slot` (per-weight state such as Adam's m and v) or `state` (a scalar).
    pub kind: &'static str,
}

/// Variables and optimizer state of `meta`.
pub fn analyse(meta: &MetaGraph) -> (Variables, OptimizerState) {
    match &meta.object_graph {
        Some(graph) => from_object_graph(graph),
        None => from_graph_ops(meta),
    }
}

fn from_object_graph(graph: &ObjectGraph) -> (Variables, OptimizerState) {
    let nodes = &graph.nodes;
    let paths = object_paths(graph, |_| true);
    let optimizers: BTreeMap<usize, String> = (0..nodes.len()).filter_map(|i| optimizer_evidence(graph, i).map(|e| (i, e))).collect();
    // What the root reaches without going through an optimizer.
    let model_reach = if optimizers.contains_key(&0) {
        vec![None; nodes.len()] // the optimizer itself was saved: everything is its state
    } else {
        object_paths(graph, |i| !optimizers.contains_key(&i))
    };

    let mut slot_refs: BTreeMap<usize, (usize, String)> = BTreeMap::new();
    let mut optimizer_vars: BTreeMap<usize, ()> = BTreeMap::new();
    for &start in optimizers.keys() {
        let mut queue = VecDeque::from([start]);
        let mut seen = vec![false; nodes.len()];
        while let Some(i) = queue.pop_front() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            let node = &nodes[i];
            if matches!(node.kind, ObjectKind::Variable(_)) && model_reach[i].is_none() {
                optimizer_vars.insert(i, ());
            }
            for slot in &node.slot_variables {
                if slot.slot_variable < nodes.len() {
                    slot_refs.insert(slot.slot_variable, (slot.original_variable, slot.slot_name.clone()));
                    queue.push_back(slot.slot_variable);
                }
            }
            queue.extend(node.children.iter().map(|&(_, c)| c).filter(|&c| c < nodes.len()));
        }
    }

    let mut list = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let ObjectKind::Variable(var) = &node.kind else { continue };
        let path = paths[i].clone().or_else(|| {
            // Legacy slot variables hang off no attribute, only off their optimizer's slot list.
            let (original, slot_name) = slot_refs.get(&i)?;
            let original = paths.get(*original).cloned().flatten().unwrap_or_else(|| format!("node {original}"));
            Some(format!("{original}/.OPTIMIZER_SLOT/{slot_name}"))
        });
        list.push(VariableInfo {
            name: var.name.clone(),
            path,
            dtype: var.dtype,
            shape: var.shape.clone(),
            trainable: Some(var.trainable),
            bytes: byte_size(var.dtype, var.shape.as_deref()),
            optimizer: optimizer_vars.contains_key(&i),
        });
    }
    let objects = optimizers
        .iter()
        .map(|(&i, evidence)| OptimizerObject { path: paths[i].clone().unwrap_or_else(|| format!("node {i}")), evidence: evidence.clone() })
        .collect();
    let slot_indices: Vec<bool> = nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n.kind, ObjectKind::Variable(_)))
        .map(|(i, _)| slot_refs.contains_key(&i))
        .collect();
    let state = optimizer_state(&list, objects, &slot_indices);
    (summarise("object-graph", list), state)
}

/// For each node, the first path (by breadth-first search over attributes, in their saved
/// order) from the root, entering only nodes `enter` allows.
fn object_paths(graph: &ObjectGraph, enter: impl Fn(usize) -> bool) -> Vec<Option<String>> {
    let mut paths: Vec<Option<String>> = vec![None; graph.nodes.len()];
    if graph.nodes.is_empty() {
        return paths;
    }
    paths[0] = Some(String::new());
    let mut queue = VecDeque::from([0usize]);
    while let Some(i) = queue.pop_front() {
        let parent = paths[i].clone().unwrap_or_default();
        for (name, child) in &graph.nodes[i].children {
            let child = *child;
            if child < graph.nodes.len() && paths[child].is_none() && enter(child) {
                paths[child] = Some(if parent.is_empty() { name.clone() } else { format!("{parent}/{name}") });
                queue.push_back(child);
            }
        }
    }
    paths
}

/// Why node `i` is an optimizer, if it is one (see the module documentation).
fn optimizer_evidence(graph: &ObjectGraph, i: usize) -> Option<String> {
    let node = &graph.nodes[i];
    if !node.slot_variables.is_empty() {
        return Some(format!("holds {} slot variable reference(s)", node.slot_variables.len()));
    }
    if let ObjectKind::UserObject { identifier } = &node.kind {
        if identifier == "optimizer" || identifier == "experimentalOptimizer" {
            return Some(format!("saved as a Keras optimizer ('{identifier}')"));
        }
    }
    let child = |name: &str| node.children.iter().find(|(n, _)| n == name).map(|&(_, c)| c);
    let counter = child("_iterations").and_then(|c| graph.nodes.get(c)).is_some_and(|n| match &n.kind {
        ObjectKind::Variable(v) => matches!(v.dtype, DType::Int64 | DType::Int32) && v.shape.as_deref() == Some(&[]),
        _ => false,
    });
    if counter && child("_variables").is_some() {
        return Some("has a Keras optimizer's `_iterations` counter and `_variables` list".to_owned());
    }
    None
}

const TF1_SLOT_SUFFIXES: &[&str] =
    &["Adam", "Momentum", "RMSProp", "Adagrad", "AdagradDA", "Ftrl", "Adadelta", "ProximalAdagrad", "Nadam", "AdamW"];

fn from_graph_ops(meta: &MetaGraph) -> (Variables, OptimizerState) {
    let is_tf1_optimizer_state = |name: &str| {
        let last = name.rsplit('/').next().unwrap_or(name);
        let base = match last.rsplit_once('_') {
            Some((base, n)) if n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() => base,
            _ => last,
        };
        (name.contains('/') && TF1_SLOT_SUFFIXES.contains(&base)) || base == "beta1_power" || base == "beta2_power"
    };
    let list: Vec<VariableInfo> = meta
        .graph_variables
        .iter()
        .map(|v| VariableInfo {
            name: v.name.clone(),
            path: None,
            dtype: v.dtype,
            shape: v.shape.clone(),
            trainable: None,
            bytes: byte_size(v.dtype, v.shape.as_deref()),
            optimizer: is_tf1_optimizer_state(&v.name),
        })
        .collect();
    let objects = if list.iter().any(|v| v.optimizer) {
        vec![OptimizerObject {
            path: "(graph)".to_owned(),
            evidence: "variables named like TF1 optimizer slots (…/Adam, …/Momentum, beta1_power)".to_owned(),
        }]
    } else {
        Vec::new()
    };
    let no_slot_refs = vec![false; list.len()];
    let state = optimizer_state(&list, objects, &no_slot_refs);
    (summarise("graph", list), state)
}

/// `slot_refs[k]`: whether the k-th variable of `list` is named by a slot reference.
fn optimizer_state(list: &[VariableInfo], objects: Vec<OptimizerObject>, slot_refs: &[bool]) -> OptimizerState {
    let variables: Vec<OptimizerVariable> = list
        .iter()
        .zip(slot_refs)
        .filter(|(v, _)| v.optimizer)
        .map(|(v, &by_ref)| {
            let per_weight = by_ref || v.shape.as_ref().is_some_and(|s| !s.is_empty());
            OptimizerVariable { name: v.name.clone(), path: v.path.clone(), kind: if per_weight { "slot" } else { "state" } }
        })
        .collect();
    OptimizerState {
        present: !objects.is_empty() || !variables.is_empty(),
        slots: variables.iter().filter(|v| v.kind == "slot").count(),
        bytes: list.iter().filter(|v| v.optimizer).filter_map(|v| v.bytes).sum(),
        objects,
        variables,
    }
}

fn summarise(source: &'static str, list: Vec<VariableInfo>) -> Variables {
    let mut groups: BTreeMap<(&str, DType, Option<&Vec<i64>>), usize> = BTreeMap::new();
    for v in &list {
        if !is_default_name(&v.name) {
            *groups.entry((v.name.as_str(), v.dtype, v.shape.as_ref())).or_default() += 1;
        }
    }
    let mut repeated_names: Vec<String> = groups.iter().filter(|(_, &n)| n > 1).map(|((name, _, _), _)| name.to_string()).collect();
    repeated_names.dedup();
    Variables {
        source,
        count: list.len(),
        trainable: list.iter().filter(|v| v.trainable == Some(true)).count(),
        parameters: list.iter().filter_map(|v| element_count(v.shape.as_deref())).sum(),
        bytes: list.iter().filter_map(|v| v.bytes).sum(),
        unknown_size: list.iter().filter(|v| v.bytes.is_none()).count(),
        repeated_names,
        list,
    }
}

/// `tf.Variable`'s default names (`Variable`, `Variable_3`) say nothing about identity.
fn is_default_name(name: &str) -> bool {
    name == "Variable" || name.strip_prefix("Variable_").is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
}

fn element_count(shape: Option<&[i64]>) -> Option<u64> {
    shape?.iter().try_fold(1u64, |n, &d| if d < 0 { None } else { n.checked_mul(d as u64) })
}

fn byte_size(dtype: DType, shape: Option<&[i64]>) -> Option<u64> {
    element_count(shape)?.checked_mul(dtype.size()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tf::saved_model_pb::{ObjectNode, SavedVariable, SlotVariableRef};

    fn var(name: &str, dtype: DType, shape: &[i64], trainable: bool) -> ObjectNode {
        ObjectNode {
            kind: ObjectKind::Variable(SavedVariable { name: name.into(), dtype, shape: Some(shape.to_vec()), trainable }),
            ..ObjectNode::default()
        }
    }

    fn object(identifier: &str, children: &[(&str, usize)]) -> ObjectNode {
        ObjectNode {
            children: children.iter().map(|&(n, c)| (n.to_owned(), c)).collect(),
            kind: ObjectKind::UserObject { identifier: identifier.into() },
            ..ObjectNode::default()
        }
    }

    fn meta(nodes: Vec<ObjectNode>) -> MetaGraph {
        MetaGraph {
            tags: vec!["serve".into()],
            tensorflow_version: String::new(),
            signatures: vec![],
            object_graph: Some(ObjectGraph { nodes }),
            graph_variables: vec![],
        }
    }

    /// The shape of a Keras 3 model saved with its Adam: the optimizer is a generic object,
    /// holds the model's weights in `_trainable_variables` and its momentums in lists.
    #[test]
    fn keras3_optimizer_is_recognised_by_structure() {
        let nodes = vec![
            object("_generic_user_object", &[("model", 1), ("optimizer", 2)]), // 0
            object("_generic_user_object", &[("_kernel", 3)]),                 // 1 model
            object("_generic_user_object", &[("_variables", 4), ("_trainable_variables", 5), ("_iterations", 6), ("_momentums", 7)]), // 2 optimizer
            var("dense/kernel", DType::Float32, &[4, 3], true),                                                                       // 3
            object("trackable_list_wrapper", &[("0", 6), ("1", 8)]),                                                                  // 4
            object("trackable_list_wrapper", &[("0", 3)]),                                                                            // 5
            var("adam/iteration", DType::Int64, &[], false),                                                                          // 6
            object("trackable_list_wrapper", &[("0", 8)]),                                                                            // 7
            var("adam/dense_kernel_momentum", DType::Float32, &[4, 3], false),                                                        // 8
        ];
        let (vars, opt) = analyse(&meta(nodes));
        assert!(opt.present);
        assert_eq!(opt.objects.len(), 1);
        assert_eq!(opt.objects[0].path, "optimizer");
        let names: Vec<_> = opt.variables.iter().map(|v| (v.name.as_str(), v.kind)).collect();
        assert_eq!(names, vec![("adam/iteration", "state"), ("adam/dense_kernel_momentum", "slot")]);
        assert_eq!(opt.slots, 1);
        assert_eq!(opt.bytes, 8 + 48);
        let kernel = vars.list.iter().find(|v| v.name == "dense/kernel").unwrap();
        assert!(!kernel.optimizer, "the model's weight is not optimizer state although the optimizer holds it");
        assert_eq!(kernel.path.as_deref(), Some("model/_kernel"));
        assert_eq!((vars.count, vars.trainable, vars.parameters, vars.bytes), (3, 1, 25, 104));
    }

    /// tf_keras legacy optimizers: identifier `optimizer`, slots reachable only by reference.
    #[test]
    fn legacy_slot_variables_are_found_through_their_references() {
        let mut opt = object("optimizer", &[("iter", 3)]);
        opt.slot_variables = vec![SlotVariableRef { original_variable: 2, slot_name: "m".into(), slot_variable: 4 }];
        let nodes = vec![
            object("_tf_keras_sequential", &[("layer_with_weights-0", 1), ("optimizer", 5)]),
            object("_tf_keras_layer", &[("kernel", 2)]),
            var("dense/kernel", DType::Float32, &[4, 3], true),
            var("Adam/iter", DType::Int64, &[], false),
            var("Adam/dense/kernel/m", DType::Float32, &[4, 3], false),
            opt,
        ];
        let (vars, state) = analyse(&meta(nodes));
        assert_eq!(state.objects[0].evidence, "holds 1 slot variable reference(s)");
        let m = vars.list.iter().find(|v| v.name == "Adam/dense/kernel/m").unwrap();
        assert!(m.optimizer);
        assert_eq!(m.path.as_deref(), Some("layer_with_weights-0/kernel/.OPTIMIZER_SLOT/m"));
        assert_eq!(state.slots, 1);
        assert_eq!(state.variables.len(), 2);
    }

    #[test]
    fn a_model_without_optimizer_has_none() {
        let nodes = vec![
            object("_generic_user_object", &[("variables", 1), ("v", 2)]),
            object("trackable_list_wrapper", &[("0", 2)]),
            var("Variable", DType::Float32, &[], true),
            // a user's own counter named like Keras' is not enough without `_variables`
            object("_generic_user_object", &[("_iterations", 4)]),
            var("steps", DType::Int64, &[], false),
        ];
        let (vars, opt) = analyse(&meta(nodes));
        assert!(!opt.present);
        assert!(opt.variables.is_empty());
        assert_eq!(vars.list[0].path.as_deref(), Some("v"), "the shortest path, not the list");
    }

    #[test]
    fn the_same_weight_stored_twice_is_pointed_out() {
        let nodes = vec![
            object("_generic_user_object", &[("variables", 1), ("_all_variables", 2)]),
            object("trackable_list_wrapper", &[("0", 3), ("1", 5)]),
            object("trackable_list_wrapper", &[("0", 4), ("1", 6)]),
            var("dense/kernel", DType::Float32, &[2, 2], true),
            var("dense/kernel", DType::Float32, &[2, 2], true),
            var("Variable", DType::Float32, &[3], true),
            var("Variable", DType::Float32, &[3], true),
        ];
        let (vars, _) = analyse(&meta(nodes));
        assert_eq!(vars.repeated_names, vec!["dense/kernel".to_owned()], "default names are not evidence");
        assert_eq!(vars.count, 4);
    }

    #[test]
    fn tf1_graphs_fall_back_to_slot_names() {
        use crate::tf::saved_model_pb::GraphVariable;
        let gv = |name: &str, shape: &[i64]| GraphVariable {
            name: name.into(),
            op: "VariableV2".into(),
            dtype: DType::Float32,
            shape: Some(shape.to_vec()),
        };
        let meta = MetaGraph {
            tags: vec!["serve".into()],
            tensorflow_version: String::new(),
            signatures: vec![],
            object_graph: None,
            graph_variables: vec![
                gv("dense/kernel", &[3, 2]),
                gv("dense/kernel/Adam", &[3, 2]),
                gv("dense/kernel/Adam_1", &[3, 2]),
                gv("beta1_power", &[]),
                gv("Adam", &[7]), // a layer named Adam at the top level is not a slot
            ],
        };
        let (vars, opt) = analyse(&meta);
        assert_eq!(vars.source, "graph");
        let flagged: Vec<_> = opt.variables.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(flagged, vec!["dense/kernel/Adam", "dense/kernel/Adam_1", "beta1_power"]);
        assert_eq!(opt.slots, 2);
    }
}
