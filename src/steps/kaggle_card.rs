//! What Kaggle Models shows, written by the package step from the same facts as `model.md`
//! (`docs.rs`): the model card of `model-metadata.json` and each variation's overview and usage
//! in `model-instance-metadata.json` (the rules of the files are in `crate::kaggle`).
//!
//! The usage follows the sections of Kaggle's own template (format, inputs, outputs, usage,
//! fine-tuning), its snippets loading the variation's latest version with
//! `kagglehub.model_download`. The model card
//! lists the model's variations and the model card fields of the model's `docs`.

use std::fmt::Write as _;

use super::docs::{citation_block, Docs, Location};
use crate::exec::Warning;
use crate::kaggle::{self, InstanceMetadata, ModelMetadata};
use crate::manifest::DocsSettings;

/// A subtitle longer than this is left out (Kaggle shows it on one line under the title).
const SUBTITLE_MAX: usize = 80;

/// The model as Kaggle shows it: everything the model card is written from.
pub(super) struct ModelCard<'a> {
    pub owner: &'a str,
    pub slug: &'a str,
    pub title: String,
    pub private: bool,
    /// The model's own documentation (not a piece's).
    pub docs: &'a DocsSettings,
    /// Every piece of the model, with its description.
    pub variations: Vec<(&'a str, Option<&'a str>)>,
}

impl ModelCard<'_> {
    /// `model-metadata.json`.
    pub(super) fn metadata(&self) -> ModelMetadata {
        let subtitle = self.docs.description.as_deref().map(str::trim).filter(|d| d.chars().count() <= SUBTITLE_MAX).unwrap_or_default();
        ModelMetadata {
            owner_slug: self.owner.to_string(),
            title: self.title.clone(),
            slug: self.slug.to_string(),
            subtitle: subtitle.to_string(),
            is_private: self.private,
            description: self.description(),
            publish_time: String::new(),
            provenance_sources: String::new(),
        }
    }

    /// The model card (markdown), in the sections of Kaggle's template.
    fn description(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Model Summary\n");
        if let Some(description) = &self.docs.description {
            let _ = writeln!(out, "{}\n", description.trim());
        }
        let _ = writeln!(out, "Variations, each a TensorFlow 2 SavedModel:\n");
        for (name, description) in &self.variations {
            match description {
                Some(d) => {
                    let _ = writeln!(out, "- `{name}`: {}", d.trim());
                }
                None => {
                    let _ = writeln!(out, "- `{name}`");
                }
            }
        }
        out.push('\n');
        let _ = writeln!(out, "# Model Characteristics\n");
        let _ = writeln!(
            out,
            "Each variation implements the Reusable SavedModel API (`__call__` with a `training` argument, `variables`, \
             `trainable_variables`, `regularization_losses`) and has a `serving_default` signature for TF Serving. \
             Before publication, exportctl loaded each one through TensorFlow's C API, `tf.saved_model.load`, \
             `hub.KerasLayer` in tf_keras and `keras.layers.TFSMLayer` in Keras 3, and compared its outputs with \
             the original model's.\n"
        );
        let docs = self.docs;
        match docs.training_data.as_slice() {
            [] => {}
            [one] => {
                let _ = writeln!(out, "# Data Overview\n\n{}\n", one.trim());
            }
            many => {
                let _ = writeln!(out, "# Data Overview\n");
                for item in many {
                    let _ = writeln!(out, "- {}", item.trim());
                }
                out.push('\n');
            }
        }
        for (title, value) in [("Evaluation Results", &docs.evaluation), ("Limitations", &docs.limitations)] {
            if let Some(value) = value {
                let _ = writeln!(out, "# {title}\n\n{}\n", value.trim());
            }
        }
        if let Some(citation) = &docs.citation {
            let _ = writeln!(out, "# Citation\n\n{}\n", citation_block(citation));
        }
        out.trim_end().to_string() + "\n"
    }

    /// `model-instance-metadata.json` of the piece `docs` describes.
    pub(super) fn variation(&self, docs: &Docs<'_>) -> InstanceMetadata {
        InstanceMetadata {
            owner_slug: self.owner.to_string(),
            model_slug: self.slug.to_string(),
            instance_slug: docs.handle.piece.to_string(),
            framework: kaggle::FRAMEWORK.to_string(),
            overview: docs.description(),
            usage: self.usage(docs),
            license_name: docs.settings.license.as_deref().map(|l| kaggle::license_name(l).unwrap_or(l)).unwrap_or_default().to_string(),
            fine_tunable: docs.fine_tunable(),
            training_data: docs.settings.training_data.clone(),
            model_instance_type: "Unspecified".to_string(),
            base_model_instance: String::new(),
            external_base_model_url: String::new(),
        }
    }

    /// The variation's usage (markdown), in the sections of Kaggle's template.
    fn usage(&self, docs: &Docs<'_>) -> String {
        let signature = &docs.traced.signature;
        let mut out = String::new();
        let _ = writeln!(out, "# Model Format\n");
        let _ = writeln!(
            out,
            "A TensorFlow 2 SavedModel with the Reusable SavedModel API and a `serving_default` signature. \
             `__call__(inputs, training=False)` takes {}; the first dimension is the batch (any size).\n",
            if docs.single_input {
                format!("the `{}` tensor itself", signature.inputs.first().map_or("", |s| s.name.as_str()))
            } else {
                format!(
                    "a dict of tensors keyed by {}",
                    signature.inputs.iter().map(|s| format!("`{}`", s.name)).collect::<Vec<_>>().join(", ")
                )
            }
        );
        let _ = writeln!(out, "# Model Inputs\n");
        docs.spec_table(&mut out, &signature.inputs);
        let _ = writeln!(out, "# Model Outputs\n");
        docs.spec_table(&mut out, &signature.outputs);
        let _ = writeln!(out, "# Model Usage\n");
        let handle = kaggle::variation_handle(self.owner, self.slug, docs.handle.piece);
        docs.usage(&mut out, Location::Kaggle { handle: &handle });
        docs.fine_tuning(&mut out, "#");
        docs.model_card(&mut out, "#");
        if let Some(body) = docs.body {
            out.push_str(body.trim_end());
            out.push('\n');
        }
        out.trim_end().to_string() + "\n"
    }

    /// What would stop Kaggle from taking these files: slugs it refuses, a license it does
    /// not list. Warnings, not errors: a build does not have to be published to Kaggle.
    pub(super) fn lints(&self, docs: &Docs<'_>) -> Vec<Warning> {
        let mut warnings = Vec::new();
        if !kaggle::is_owner_slug(self.owner) {
            warnings.push(Warning {
                code: crate::contract::Lint::KaggleSlug,
                message: format!("`{}` is not a Kaggle owner slug: Kaggle would refuse to publish under it", self.owner),
                help: Some(format!("set `owner = \"{}\"` (your Kaggle user or organisation) in [kaggle]", kaggle::to_slug(self.owner))),
            });
        }
        if !kaggle::is_model_slug(self.slug) {
            warnings.push(Warning {
                code: crate::contract::Lint::KaggleSlug,
                message: format!("model name `{}` is not a Kaggle model slug (letters and digits joined by single dashes)", self.slug),
                help: Some(format!("rename the model, e.g. `[models.{}]`", kaggle::to_slug(self.slug))),
            });
        }
        if let Some(license) = docs.settings.license.as_deref() {
            if kaggle::license_name(license).is_none() {
                let known: Vec<&str> = kaggle::LICENSES.iter().map(|(spdx, _)| *spdx).collect();
                warnings.push(Warning {
                    code: crate::contract::Lint::KaggleLicense,
                    message: format!("license `{license}` is not one Kaggle Models lists: Kaggle would refuse the variation"),
                    help: Some(format!("Kaggle takes these (as SPDX ids): {}", known.join(", "))),
                });
            }
        }
        warnings
    }
}
