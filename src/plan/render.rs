//! The plan as text (for people), DOT (for Graphviz) and JSON (for tools).

use std::fmt::Write as _;

use clap::ValueEnum;
use serde_json::json;

use super::Plan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Dot,
    Json,
}

impl Plan {
    pub fn render(&self, format: PlanFormat) -> String {
        match format {
            PlanFormat::Text => self.to_text(),
            PlanFormat::Dot => self.to_dot(),
            PlanFormat::Json => serde_json::to_string_pretty(&self.to_json()).expect("plan JSON serialises") + "\n",
        }
    }

    /// One line per step in execution order, with what it waits for.
    fn to_text(&self) -> String {
        let order = self.topological();
        let width = order.iter().map(|&n| self.graph[n].to_string().len()).max().unwrap_or(0);
        let mut out = String::new();
        for n in order {
            let mut deps: Vec<String> = self.dependencies(n).map(|d| self.graph[d].to_string()).collect();
            deps.sort();
            let id = self.graph[n].to_string();
            if deps.is_empty() {
                let _ = writeln!(out, "{id}");
            } else {
                let _ = writeln!(out, "{id:width$}  <- {}", deps.join(", "));
            }
        }
        let _ = writeln!(out, "{} steps", self.len());
        out
    }

    fn to_dot(&self) -> String {
        let mut out = String::from("digraph exportctl {\n    rankdir=LR;\n    node [shape=box, fontname=\"Helvetica\"];\n");
        for n in self.topological() {
            let id = &self.graph[n];
            let _ = writeln!(
                out,
                "    \"{id}\" [label=\"{}\\n{}\"];",
                id.piece.as_deref().map_or(id.model.clone(), |p| format!("{}/{p}", id.model)),
                id.kind.as_str()
            );
        }
        let mut edges: Vec<(String, String)> = self
            .graph
            .edge_indices()
            .filter_map(|e| self.graph.edge_endpoints(e))
            .map(|(a, b)| (self.graph[a].to_string(), self.graph[b].to_string()))
            .collect();
        edges.sort();
        for (a, b) in edges {
            let _ = writeln!(out, "    \"{a}\" -> \"{b}\";");
        }
        out.push_str("}\n");
        out
    }

    fn to_json(&self) -> serde_json::Value {
        let steps: Vec<serde_json::Value> = self
            .topological()
            .into_iter()
            .map(|n| {
                let id = &self.graph[n];
                let mut deps: Vec<String> = self.dependencies(n).map(|d| self.graph[d].to_string()).collect();
                deps.sort();
                json!({
                    "id": id.to_string(),
                    "kind": id.kind,
                    "model": id.model,
                    "piece": id.piece,
                    "depends_on": deps,
                })
            })
            .collect();
        json!({ "steps": steps })
    }
}
