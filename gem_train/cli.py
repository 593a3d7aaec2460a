"""gem-train: corpus, tokenizer, training and evaluation of GEM models."""
from __future__ import annotations

import json
import time
from pathlib import Path

import click

from gem_runtime.cli_errors import run_cli
from gem_runtime.errors import GemEdgeError

PRESET_NAMES = ["tiny", "demo", "gem-7b"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Train and evaluate GEM models (PyTorch)."""


def main(argv: list[str] | None = None):
    run_cli(cli, "gem-train", argv)


@cli.command()
@click.option("--n", "n", type=click.IntRange(1), required=True, help="number of records")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-images", is_flag=True, help="skip PNG rendering")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="processes (the output does not depend on it)")
def data(n, out, seed, no_images, workers):
    """Write a grounded synthetic corpus: WFDB records, PNG images, records.json (ECG-Grounding format)."""
    from .corpus import write_corpus

    path = write_corpus(out, n, seed, images=not no_images, progress=True, workers=workers)
    click.echo(f"wrote {n} records to {path}")


@cli.command("real-corpus")
@click.option("--real", "folders", type=click.Path(exists=True, file_okay=False, path_type=Path), multiple=True,
              required=True, help="a folder of labelled WFDB records (CinC '# Dx:' codes or LUDB diagnoses); repeatable")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="the training split's corpus (records.json, ecg/, images/, corpus.txt, split.json)")
@click.option("--heldout", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="link the held-out records here, one folder per --real folder, for `gem-train eval --real`")
@click.option("--copies", type=click.IntRange(1), default=8, show_default=True,
              help="augmented copies per training record (copy 0: as recorded)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-images", is_flag=True, help="skip PNG rendering")
@click.option("--stretch", type=click.FloatRange(0.5, 2.0), nargs=2, default=None,
              help="LO HI: each copy but the first plays f x 10 s in 10 s, f in [LO, HI] (the rate moves by f)")
@click.option("--af-copies", type=click.IntRange(0), default=0, show_default=True,
              help="per sinus record, this many atrial fibrillations made from its own beats (gem_train.real_af)")
@click.option("--flutter-copies", type=click.IntRange(0), default=0, show_default=True,
              help="per sinus record, this many atrial flutters made from its own beats (gem_train.real_flutter)")
def real_corpus(folders, out, heldout, copies, seed, no_images, stretch, af_copies, flutter_copies):
    """Labelled real records as a training corpus: the training split (LUDB N % 4 != 3, CinC even numbers), its
    reports written from the labels and our measurements in the simulator corpus's sentences."""
    from .real_corpus import write_heldout, write_real_corpus

    summary = write_real_corpus(list(folders), out, copies=copies, seed=seed, images=not no_images,
                                stretch=stretch, af_copies=af_copies,
                                flutter_copies=flutter_copies)
    click.echo(f"wrote {summary['examples']} examples of {len(summary['train_records'])} records to {out}; "
               f"{len(summary['heldout_records'])} held out, {len(summary['left_out'])} copies left out")
    if heldout is not None:
        for d in write_heldout(list(folders), heldout):
            click.echo(f"held out: {d}")


@cli.command()
@click.option("--ludb", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="LUDB folder (WFDB records with each lead's P/QRS/T marks); its tune half is used")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="the ONNX file to write")
@click.option("--steps", type=click.IntRange(1), default=3000, show_default=True)
@click.option("--simulated", type=click.IntRange(0), default=250, show_default=True,
              help="simulated records mixed in, labelled from their truth")
@click.option("--validate", type=click.IntRange(0), default=0, show_default=True,
              help="keep this many of the tune half's records out of training, to watch the fit on")
@click.option("--seed", type=int, default=24, show_default=True)
def delineator(ludb, out, steps, simulated, validate, seed):
    """Train the runtime's wave delineator (P/QRS/T per sample, ONNX) on LUDB's cardiologists' marks."""
    import torch

    from .delineator import train

    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    train(ludb, out, steps, seed, validate, simulated, log=click.echo)


@cli.command()
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--vocab-size", type=click.IntRange(300), default=1024, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="default: DATA/tokenizer")
def tokenizer(data_dir, vocab_size, out):
    """Train a LLaMA-style SentencePiece tokenizer on the corpus text."""
    from .tokenizer import train_tokenizer

    corpus = data_dir / "corpus.txt"
    if not corpus.exists():
        raise GemEdgeError(f"{corpus}: missing; make the corpus with `gem-train data` first")
    path = train_tokenizer(corpus, out or data_dir / "tokenizer", vocab_size)
    click.echo(f"wrote {path}")


@cli.command("pretrain-tower")
@click.option("--preset", type=click.Choice(PRESET_NAMES), required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--max-steps", type=click.IntRange(1), default=3000, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--noise-share", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="share of records with wander, mains hum and muscle noise")
@click.option("--beat-weight", type=click.FloatRange(0), default=1.0, show_default=True,
              help="weight of the per-patch timing targets (P onset, QRS onset, R peak); 0: global targets only")
@click.option("--init-tower", "init_tower", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="start from the tower of an earlier `pretrain-tower --out DIR`")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="continue from OUT/pretrain_state.pt")
def pretrain_tower(preset, out, max_steps, batch_size, lr, noise_share, beat_weight, init_tower, seed, resume):
    """Pretrain the ECG tower on simulated records: regress their measured truth, name their conditions."""
    from .config import GemConfig
    from .pretrain import PretrainArgs, pretrain_tower as run

    args = PretrainArgs(max_steps=max_steps, batch_size=batch_size, lr=lr, noise_share=noise_share, seed=seed,
                        beat_weight=beat_weight)
    path = run(GemConfig.from_name(preset), out, args, resume=resume, init_tower=init_tower,
               log=lambda m: click.echo(m, err=True))
    click.echo(f"wrote {path}")


@cli.command()
@click.option("--preset", type=click.Choice(PRESET_NAMES), required=True)
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--tokenizer", "tokenizer_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="default: DATA/tokenizer")
@click.option("--stage", type=click.Choice(["align", "instruct"]), default="instruct", show_default=True)
@click.option("--init", "init_from", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="start from this checkpoint (e.g. after --stage align)")
@click.option("--init-tower", "init_tower", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="start the ECG tower from `gem-train pretrain-tower --out DIR`")
@click.option("--tower-lr-scale", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="the ECG tower's learning rate as a share of --lr (a pretrained tower moves less)")
@click.option("--oversample", multiple=True, metavar="CONDITION:SHARE",
              help="draw this share of each batch from records with the condition (repeatable)")
@click.option("--mix", multiple=True, metavar="DIR:SHARE",
              help="draw this share of each batch from another corpus (e.g. `gem-train real-corpus`; repeatable)")
@click.option("--max-steps", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True)
@click.option("--grad-accum", type=click.IntRange(1), default=1, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--warmup", type=click.IntRange(0), default=50, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="continue from OUT/trainer_state.pt")
def fit(preset, data_dir, out, tokenizer_dir, stage, init_from, init_tower, tower_lr_scale, oversample, mix,
        max_steps, batch_size, grad_accum, lr, warmup, seed, resume):
    """Train GEM: stage `instruct` (GEM's recipe) or `align` (projectors only)."""
    from .config import GemConfig
    from .train import TrainArgs, fit as run_fit

    tokenizer_dir = tokenizer_dir or data_dir / "tokenizer"
    if not (tokenizer_dir / "tokenizer.model").is_file():
        raise GemEdgeError(f"{tokenizer_dir / 'tokenizer.model'}: no tokenizer; make one with "
                           f"`gem-train tokenizer --data {data_dir}` or pass --tokenizer DIR")

    from .simulate import CONDITIONS

    pools = []
    for item in oversample:
        name, _, share = item.rpartition(":")
        try:
            pools.append((name, float(share)))
        except ValueError:
            raise click.BadParameter(f"{item!r}: expected CONDITION:SHARE, e.g. 'first-degree AV block:0.3'",
                                     param_hint="--oversample") from None
        if name not in CONDITIONS or not 0 < pools[-1][1] < 1:
            raise click.BadParameter(f"{item!r}: the condition must be one of {', '.join(CONDITIONS)} and the "
                                     "share between 0 and 1", param_hint="--oversample")
    mixes = []
    for item in mix:
        folder, _, share = item.rpartition(":")
        try:
            mixes.append((Path(folder), float(share)))
        except ValueError:
            raise click.BadParameter(f"{item!r}: expected DIR:SHARE, e.g. 'work/demo/real:0.3'",
                                     param_hint="--mix") from None
        if not (Path(folder) / "records.json").is_file() or not 0 < mixes[-1][1] < 1:
            raise click.BadParameter(f"{item!r}: DIR must hold a records.json and the share lie between 0 and 1",
                                     param_hint="--mix")
    args = TrainArgs(stage=stage, max_steps=max_steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr,
                     warmup_steps=warmup, seed=seed, tower_lr_scale=tower_lr_scale, oversample=tuple(pools),
                     mix=tuple(mixes))
    run_fit(GemConfig.from_name(preset), data_dir, tokenizer_dir, out, args,
            init_from=init_from, init_tower=init_tower, resume=resume, log=lambda m: click.echo(m, err=True))


@cli.command("eval")
@click.option("--checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="a corpus of held-out synthetic records (`gem-train data` with a seed training never used)")
@click.option("--n", "n", type=click.IntRange(1), default=200, show_default=True)
@click.option("--real", "real", type=click.Path(exists=True, path_type=Path), multiple=True,
              help="a real ECG file (any format gem-run reads), or a folder of labelled WFDB records (SNOMED "
                   "'# Dx:' codes or LUDB diagnoses in the headers); repeatable")
@click.option("--max-new-tokens", type=click.IntRange(1), default=256, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="write JSON here")
@click.option("--revise", is_flag=True,
              help="also score the reports as gem-run --revise-rhythm revises them")
def evaluate(checkpoint, data_dir, n, real, max_new_tokens, out, revise):
    """Greedy generation with the PyTorch model: ECG-Bench-style scores from the text on synthetic records, and
    on real ECGs what the model says beside what their cart says."""
    from .evaluate import evaluate_checkpoint, evaluate_labelled, evaluate_real

    if data_dir is None and not real:
        raise click.UsageError("give --data DIR, --real FILE or both (--real DIR: a folder of labelled records)")
    t0 = time.time()
    res = {}
    if data_dir is not None:
        res = evaluate_checkpoint(checkpoint, data_dir, n, max_new_tokens, revise=revise)
        _echo_scores(res["scores"])
        if revise:
            click.echo(f"after --revise-rhythm ({res['revised']['reports_revised']} reports revised):")
            _echo_scores(res["revised"]["scores"])
    folders, files = [p for p in real if p.is_dir()], [p for p in real if not p.is_dir()]
    if folders:
        res["labelled"] = evaluate_labelled(checkpoint, folders, max_new_tokens, log=lambda m: click.echo(m, err=True),
                                            revise=revise)
        _echo_labelled(res["labelled"])
        if revise:
            r, g = res["labelled"]["revised"]["rhythm"], res["labelled"]["revised"]["grounding_of_model"]
            click.echo(f"  after --revise-rhythm ({len(res['labelled']['revised']['revisions'])} revisions): rhythm "
                       f"named right {r['right']}/{r['n']}; atrial fibrillation called on {r['sinus_called_af']}/"
                       f"{r['sinus_records']} sinus records; wrong rhythm statements left {g['wrong_statements']} "
                       f"({g['wrong_flagged']} flagged), right ones flagged {g['right_flagged']}")
    if files:
        readings = evaluate_real(checkpoint, files, max_new_tokens)
        res["real"] = [r.to_dict() for r in readings]
        for r in readings:
            device = "no device statement" if not r.device_statements else \
                f"{r.device}: {'; '.join(r.device_statements)}, {r.device_hr_bpm} bpm"
            click.echo(f"{r.file}: model says {r.rhythm} at {r.stated_hr_bpm} bpm (measured {r.measured_hr_bpm:.1f}); "
                       f"{device}")
    if out:
        out.write_text(json.dumps(res, indent=2))
    click.echo(f"({time.time() - t0:.0f} s)")


def _echo_labelled(res: dict) -> None:
    r = res["rhythm"]
    acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
    click.echo(f"labelled real records: {res['n_records']} read, {len(res['skipped'])} unreadable")
    click.echo(f"  rhythm named right {r['right']}/{r['n']} ({acc}); atrial fibrillation called on "
               f"{r['sinus_called_af']}/{r['sinus_records']} sinus records")
    for name, c in res["conditions"].items():
        click.echo(f"  {name:38s} named and true {c['tp']}, over-called {c['fp']}, missed {c['fn']}, "
                   f"stated where not labelled {c['stated_unlabelled']}")
    labels = res["grounding_of_labels"]["rhythm"]
    for what, g in (("the model's", res["grounding_of_model"]), ("each label's and each wrong", labels)):
        click.echo(f"  grounding on {what} rhythm statements: wrong flagged {g['wrong_flagged']}/"
                   f"{g['wrong_statements']} ({_share(g['wrong_flagged_share'])}), right flagged "
                   f"{g['right_flagged']}/{g['right_statements']} ({_share(g['right_flagged_share'])})")


def _share(x) -> str:
    return "-" if x is None else f"{x:.1%}"


def _echo_scores(s: dict) -> None:
    mae = "-" if s["hr_mae_bpm"] is None else f"{s['hr_mae_bpm']:.1f}"
    click.echo(f"n={s['n']}  rhythm accuracy {s['rhythm_accuracy']:.3f}  diagnosis macro-F1 "
               f"{s['diagnosis_macro_f1']:.3f}  HR within 10% {s['hr_within_10pct']:.3f}  mean |HR error| {mae} bpm")
    for name, f1 in s["diagnosis_f1"].items():
        c = s["diagnosis_counts"][name]
        click.echo(f"  F1 {name:32s} {f1 if f1 is None else round(f1, 3)}  "
                   f"(stated and true {c['tp']}, over-called {c['fp']}, missed {c['fn']})")
    for quantity, e in s["stated_numbers"].items():
        mae = "-" if e["mean_abs_error"] is None else f"{e['mean_abs_error']:.1f}"
        click.echo(f"  stated {quantity:14s} in {e['stated']:.2f} of texts, mean |error| {mae}, "
                   f"within tolerance {e['within_tolerance']:.3f}")


if __name__ == "__main__":
    main()
