"""``genlab experiment``: each lecture-level claim as one command that writes a measured table
and a figure into ``docs/experiments/`` (see ``genlab.recipes.experiments``). Each verb's
options are generated from its experiment's config dataclass."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from functools import reduce
from pathlib import Path
from types import ModuleType
from typing import Any

import typer

from genlab.cli._app import app
from genlab.cli.options import config_command, option_names
from genlab.core.config import format_value
from genlab.recipes.experiments import (
    adapters,
    ar_vs_nar,
    calibration,
    chain_of_thought,
    detection,
    diffusion_guidance,
    diffusion_prediction,
    diffusion_steps,
    editing,
    emergence,
    icl_wrong_labels,
    image_families,
    instruction_tuning,
    knowledge_vs_language,
    least_to_most,
    pixel_vs_latent,
    prompt_search,
    prompting_all,
    retrieval,
    rlhf_vs_size,
    scale_all,
    scaling_laws,
    self_consistency,
    text_encoder_size,
    toolformer,
    u_shaped,
    unlearning,
    wavegrad_steps,
)
from genlab.recipes.experiments.adapters import AdaptersConfig
from genlab.recipes.experiments.ar_vs_nar import ARvsNARConfig
from genlab.recipes.experiments.calibration import CalibrationConfig
from genlab.recipes.experiments.chain_of_thought import ChainOfThoughtConfig
from genlab.recipes.experiments.detection import DetectionConfig
from genlab.recipes.experiments.diffusion_guidance import GuidanceConfig
from genlab.recipes.experiments.diffusion_prediction import PredictionConfig
from genlab.recipes.experiments.diffusion_steps import StepsConfig
from genlab.recipes.experiments.editing import EditingConfig
from genlab.recipes.experiments.emergence import EmergenceConfig
from genlab.recipes.experiments.icl_wrong_labels import WrongLabelsConfig
from genlab.recipes.experiments.image_families import ImageFamiliesConfig
from genlab.recipes.experiments.instruction_tuning import InstructionTuningConfig
from genlab.recipes.experiments.knowledge_vs_language import KnowledgeLanguageConfig
from genlab.recipes.experiments.least_to_most import LeastToMostConfig
from genlab.recipes.experiments.pixel_vs_latent import PixelVsLatentConfig
from genlab.recipes.experiments.prompt_search import PromptSearchConfig
from genlab.recipes.experiments.prompting_all import PromptingAllConfig
from genlab.recipes.experiments.retrieval import RetrievalExperimentConfig
from genlab.recipes.experiments.rlhf_vs_size import RLHFSizeConfig
from genlab.recipes.experiments.scale_all import ScaleAllConfig
from genlab.recipes.experiments.scaling_laws import ScalingLawsConfig
from genlab.recipes.experiments.self_consistency import SelfConsistencyConfig
from genlab.recipes.experiments.text_encoder_size import TextEncoderSizeConfig
from genlab.recipes.experiments.toolformer import ToolformerExperimentConfig
from genlab.recipes.experiments.u_shaped import UShapedConfig
from genlab.recipes.experiments.unlearning import UnlearningConfig
from genlab.recipes.experiments.wavegrad_steps import WaveGradStepsConfig

experiment = typer.Typer(
    help="Run an experiment: a claim, measured, written to docs/experiments/.",
    no_args_is_help=True,
)
app.add_typer(experiment, name="experiment")
PREDICTION_ALIASES = {"run": "--base"}  # the flag its docs and pages use for the base run


def command_line(verb: str, cfg: Any, aliases: Mapping[str, str] | None = None) -> str:
    """``cfg`` (an experiment's config) as the ``genlab experiment VERB`` command line that
    makes it again, every setting spelled out (defaults too, should they change), by its alias
    where it has one."""
    parts = ["genlab", "experiment", verb]
    for key, flags in option_names(type(cfg), aliases).items():
        flag, value = flags[-1], reduce(getattr, key.split("."), cfg)
        if isinstance(value, bool):
            parts.append(flag if value else f"--no-{flag[2:]}")
        else:
            parts += [flag, shlex.quote(format_value(value))]
    return " ".join(parts)


def _run(module: ModuleType, cfg: Any, aliases: Mapping[str, str] | None = None) -> None:
    """Run ``module``'s experiment, recording the command line that makes it again (the verb
    is its ``NAME`` dashed), and say where its page went."""
    module.run_experiment(cfg, command_line(module.NAME.replace("_", "-"), cfg, aliases))
    typer.echo(f"wrote {Path(cfg.out_dir) / module.NAME}.md")


@experiment.command("diffusion-steps")
@config_command(StepsConfig)
def steps(cfg: StepsConfig) -> None:
    """DDPM's 1000 ancestral steps against DDIM at 10/20/50/100: FID, adherence, s/image."""
    _run(diffusion_steps, cfg)


@experiment.command("diffusion-prediction")
@config_command(PredictionConfig, aliases=PREDICTION_ALIASES)
def prediction(cfg: PredictionConfig) -> None:
    """Predict the noise or the image: arms trained alike but for --prediction, then sampled."""
    _run(diffusion_prediction, cfg, PREDICTION_ALIASES)


@experiment.command("diffusion-guidance")
@config_command(GuidanceConfig)
def guidance(cfg: GuidanceConfig) -> None:
    """Classifier-free guidance scale from 0 to 8: caption adherence against FID."""
    _run(diffusion_guidance, cfg)


@experiment.command("wavegrad-steps")
@config_command(WaveGradStepsConfig)
def wavegrad_steps_verb(cfg: WaveGradStepsConfig) -> None:
    """WaveGrad at 1,000 / 50 / 25 / 6 steps and on a searched 6-step schedule: LSD, RTF."""
    _run(wavegrad_steps, cfg)


@experiment.command("image-families")
@config_command(ImageFamiliesConfig)
def image_families_verb(cfg: ImageFamiliesConfig) -> None:
    """Diffusion, VAE, flow, GAN, image GPT, MaskGIT at the same training time; MaskGIT's steps."""
    _run(image_families, cfg)


@experiment.command("pixel-vs-latent")
@config_command(PixelVsLatentConfig)
def pixel_vs_latent_verb(cfg: PixelVsLatentConfig) -> None:
    """Pixel diffusion, latent diffusion and a cascade at the same minutes: cost and quality."""
    _run(pixel_vs_latent, cfg)


@experiment.command("text-encoder-size")
@config_command(TextEncoderSizeConfig)
def text_encoder_size_verb(cfg: TextEncoderSizeConfig) -> None:
    """Imagen's claim: two frozen text encoders x two UNet widths, adherence on unseen captions."""
    _run(text_encoder_size, cfg)


@experiment.command("toolformer")
@config_command(ToolformerExperimentConfig)
def toolformer_verb(cfg: ToolformerExperimentConfig) -> None:
    """Toolformer on each ladder rung: test accuracy with and without its tools, by size."""
    _run(toolformer, cfg)


@experiment.command("retrieval")
@config_command(RetrievalExperimentConfig)
def retrieval_verb(cfg: RetrievalExperimentConfig) -> None:
    """Search, read, cite: do an SFT rung's numbered citations point to the answer's passage?"""
    _run(retrieval, cfg)


@experiment.command("rlhf-vs-size")
@config_command(RLHFSizeConfig)
def rlhf_vs_size_verb(cfg: RLHFSizeConfig) -> None:
    """Small RLHF vs big SFT: the demo's PPO and DPO against SFT on a model 4x its size."""
    _run(rlhf_vs_size, cfg)


@experiment.command("adapters")
@config_command(AdaptersConfig)
def adapters_verb(cfg: AdaptersConfig) -> None:
    """One base, many tasks: full fine-tuning vs LoRA, bottleneck adapters and soft prompts."""
    _run(adapters, cfg)


@experiment.command("ar-vs-nar")
@config_command(ARvsNARConfig)
def ar_vs_nar_verb(cfg: ARvsNARConfig) -> None:
    """AR greedy and beam against mask-predict at 1-10 iterations: BLEU and ms per sentence."""
    _run(ar_vs_nar, cfg)


@experiment.command("detection")
@config_command(DetectionConfig)
def detection_verb(cfg: DetectionConfig) -> None:
    """A watermark against zero-shot and trained detectors: TPR at 1% FPR, judge drop."""
    _run(detection, cfg)


@experiment.command("editing")
@config_command(EditingConfig)
def editing_verb(cfg: EditingConfig) -> None:
    """Change one fact by ROME or fine-tuning, 100 edits: efficacy, paraphrase, specificity."""
    _run(editing, cfg)


@experiment.command("unlearning")
@config_command(UnlearningConfig)
def unlearning_verb(cfg: UnlearningConfig) -> None:
    """Forget two people of the fact model by GA, gradient difference and NPO: TOFU's measures."""
    _run(unlearning, cfg)


@experiment.command("icl-wrong-labels")
@config_command(WrongLabelsConfig)
def icl_wrong_labels_verb(cfg: WrongLabelsConfig) -> None:
    """In-context demonstrations with gold, random or no labels, on each size of the ladder."""
    _run(icl_wrong_labels, cfg)


@experiment.command("instruction-tuning")
@config_command(InstructionTuningConfig)
def instruction_tuning_verb(cfg: InstructionTuningConfig) -> None:
    """Zero-shot accuracy on held-out task families before and after SFT, by model size."""
    _run(instruction_tuning, cfg)


@experiment.command("chain-of-thought")
@config_command(ChainOfThoughtConfig)
def chain_of_thought_verb(cfg: ChainOfThoughtConfig) -> None:
    """Direct answers against few-shot and zero-shot chain of thought, by model size."""
    _run(chain_of_thought, cfg)


@experiment.command("self-consistency")
@config_command(SelfConsistencyConfig)
def self_consistency_verb(cfg: SelfConsistencyConfig) -> None:
    """Majority vote over 1-20 sampled answers, chains of thought against bare answers."""
    _run(self_consistency, cfg)


@experiment.command("least-to-most")
@config_command(LeastToMostConfig)
def least_to_most_verb(cfg: LeastToMostConfig) -> None:
    """Short demonstrations, long questions: chain of thought against least-to-most."""
    _run(least_to_most, cfg)


@experiment.command("prompt-search")
@config_command(PromptSearchConfig)
def prompt_search_verb(cfg: PromptSearchConfig) -> None:
    """A hand-written instruction against APE's, APE with search, and a trained soft prompt."""
    _run(prompt_search, cfg)


@experiment.command("prompting-all")
@config_command(PromptingAllConfig)
def prompting_all_verb(cfg: PromptingAllConfig) -> None:
    """The ladder, then every prompting experiment's page."""
    _run(prompting_all, cfg)


@experiment.command("scaling-laws")
@config_command(ScalingLawsConfig)
def scaling_laws_verb(cfg: ScalingLawsConfig) -> None:
    """A sweep of GPTs, the Chinchilla fit, and its prediction of a run at 4x the compute."""
    _run(scaling_laws, cfg)


@experiment.command("scale-all")
@config_command(ScaleAllConfig)
def scale_all_verb(cfg: ScaleAllConfig) -> None:
    """The sweep once, then all five scale experiments' pages and what they cost."""
    _run(scale_all, cfg)


@experiment.command("emergence")
@config_command(EmergenceConfig)
def emergence_verb(cfg: EmergenceConfig) -> None:
    """Column arithmetic by scale: exact match (sharp) against per-digit and per-token scores."""
    _run(emergence, cfg)


@experiment.command("calibration")
@config_command(CalibrationConfig)
def calibration_verb(cfg: CalibrationConfig) -> None:
    """Calibration error by model size, and the demo's SFT model against its PPO and DPO."""
    _run(calibration, cfg)


@experiment.command("u-shaped")
@config_command(UShapedConfig)
def u_shaped_verb(cfg: UShapedConfig) -> None:
    """A memo trap by scale: copy what the text says or recall the world's fact?"""
    _run(u_shaped, cfg)


@experiment.command("knowledge-vs-language")
@config_command(KnowledgeLanguageConfig)
def knowledge_vs_language_verb(cfg: KnowledgeLanguageConfig) -> None:
    """Grammar and fact minimal pairs against training tokens: how much text each needs."""
    _run(knowledge_vs_language, cfg)
