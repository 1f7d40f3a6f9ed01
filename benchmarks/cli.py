"""Command line: `python -m benchmarks {run,list,weights,data,figures,report,merge,bench,inspect}` (SPEC 9b)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.running.presets import PRESETS, get_preset

SCALING_TRAIN_SIZES = (25, 50, 100, 200, 400, 800, 1600)
SCALING_SIDES = (128, 256, 512)
"""`bench scaling` defaults (benchmarks.running.scaling.TRAIN_SIZES / SIDES; kept here so that
building the parser imports no torch)."""

log = logging.getLogger("benchmarks")

DEFAULT_DATASET = "smartphone-synth"
WEIGHT_CHOICES = ("auto", "pretrained", "substitute", "random")
IMPORT_LAYOUTS = ("per-class", "annotated", "mvtec-ad", "mvtec-ad2", "visa", "btad", "kolektorsdd2")
"""`data import --layout` choices besides auto (benchmarks.data.importer.LAYOUTS; a test keeps them equal)."""
REPO_ROOT = Path(__file__).resolve().parent.parent


def default_results_root() -> Path:
    """`$BENCHMARKS_RESULTS`, else the checkout's `results/` (not the working directory)."""
    return Path(os.environ.get("BENCHMARKS_RESULTS", REPO_ROOT / "results"))


class UsageError(ValueError):
    """Unusable arguments: reported in one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a grid of method x dataset x variant x seed cells")
    which = run.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every registered method")
    which.add_argument("--methods", help="comma-separated method names")
    run.add_argument("--datasets", default=DEFAULT_DATASET,
                     help="comma-separated: registered names, manifest:PATH, folder:PATH, mvtec:PATH/CATEGORY")
    run.add_argument("--variants", help="comma-separated variants (default: each method's default variants)")
    run.add_argument("--seeds", default="0", help="comma-separated integer seeds")
    run.add_argument("--weights", choices=WEIGHT_CHOICES, default="auto",
                     help="auto: the paper's backbone when found, else the bundled ImageNet substitute where the "
                          "method can take it, else random; substitute: always the bundled backbone where possible")
    run.add_argument("--option", action="append", default=[], metavar="METHOD.KEY=VALUE",
                     help="a method option (repeatable; VALUE is YAML: 3, 0.5, true, [a, b]); "
                          "`list methods --options` shows them")
    run.add_argument("--weights-dir", type=Path, help="folder with <backbone>.safetensors files")
    run.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    run.add_argument("--out", type=Path, help="run folder (default: results/<preset>)")
    run.add_argument("--preset", choices=sorted(PRESETS), default="default")
    run.add_argument("--force", action="store_true", help="recompute finished cells")
    run.add_argument("--executor", choices=("local", "ray"), default="local", help="ray: cells as Ray tasks")
    run.add_argument("--shard", help="run slice I of N of the grid, e.g. 1/4")
    run.add_argument("--cell-timeout", type=float, help="seconds per cell (default from the preset)")
    run.add_argument("--no-report", action="store_true", help="do not write report.md and figures at the end")
    run.add_argument("--dry-run", action="store_true",
                     help="print the plan: every cell with its predicted time (from `bench scaling`), run nothing")
    run.add_argument("--scaling", type=Path,
                     help="the `bench scaling` folder or scaling.json to predict from (default: results/scaling-PRESET "
                          "when it exists, else results/scaling)")
    run.add_argument("--save-models", action="store_true",
                     help="keep each cell's fitted model in <out>/models/ (read by `inspect`)")
    run.add_argument("--roi", choices=("auto", "on", "off"), default="auto",
                     help="ROI-guided image scores where the dataset gives a region of interest: the method's "
                          "map pooled inside it (auto: used where it beats the method's own score on validation; "
                          "both are measured either way)")

    lister = sub.add_parser("list", help="list methods, datasets or weights")
    lister.add_argument("what", nargs="?", choices=("methods", "datasets", "weights"), default="methods")
    lister.add_argument("--options", action="store_true", help="with methods: each method's options and defaults")
    lister.add_argument("--weights-dir", type=Path)
    weights = sub.add_parser("weights", help="where each backbone's weights were found, or how to provide them")
    weights.add_argument("--weights-dir", type=Path)

    data = sub.add_parser("data", help="dataset tools")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    generate = data_sub.add_parser("generate", help="write the embedded dataset's images, masks and manifest")
    generate.add_argument("name", choices=("smartphone-synth", "smartphone-synth-wild"))
    generate.add_argument("--out", type=Path, required=True)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--scale", type=float, default=1.0)
    check = data_sub.add_parser("check", help="validate a manifest and list every problem")
    check.add_argument("manifest", type=Path)
    importer = data_sub.add_parser(
        "import", help="turn a defect dataset as it is published (class folders, COCO / Labelme / YOLO annotations, "
                       "MVTec AD / AD 2, VisA, BTAD, KolektorSDD2) into a manifest with a seeded split "
                       "(docs/data-import.md)")
    importer.add_argument("src", type=Path, help="the dataset folder as downloaded")
    importer.add_argument("--out", type=Path, required=True, help="new or empty folder for manifest.csv and images")
    importer.add_argument("--layout", choices=("auto", *IMPORT_LAYOUTS), default="auto")
    importer.add_argument("--category", help="which category of a root holding several (MVTec, VisA, BTAD)")
    importer.add_argument("--seed", type=int, default=0, help="seed of the split")
    importer.add_argument("--val-fraction", type=float, default=0.2,
                          help="share of the published test (per class val lacks), or of all images where "
                               "nothing is published, that goes to val (default 0.2)")
    importer.add_argument("--test-fraction", type=float,
                          help="share of the images that goes to test where the set publishes no split (default 0.2)")
    importer.add_argument("--supervised-train", type=float, default=0.0, metavar="FRACTION",
                          help="also put this share of the anomalies in train as label-1 rows (default 0: none)")
    importer.add_argument("--copy", action="store_true", help="copy the files (default: hard links, else copies)")
    importer.add_argument("--normal", nargs="+", metavar="NAME",
                          help="the defect-free class folder name(s), ignoring case (default: good, normal, ok, "
                               "free, defect_free, no_defect, clean, ...)")
    importer.add_argument("--years", type=Path, metavar="FILE",
                          help="CSV of folder or model name -> release year (columns name,year)")
    importer.add_argument("--year-from", metavar="PATTERN",
                          help="read the year from each image's path: a regex (group 'year', optional group "
                               "'group') or a folder index (0 = the first folder below SRC)")
    importer.add_argument("--test-years", metavar="YEARS",
                          help="cross-generation split: every real image of these release years (e.g. 2024-2025) "
                               "is test, the other years give train and val")
    importer.add_argument("--generated", type=Path, action="append", default=[], metavar="DIR",
                          help="generated images (class folders, masks or annotations as in SRC), added to train "
                               "only as source=generated rows (repeatable)")
    importer.add_argument("--hard-negatives", type=Path, action="append", default=[], metavar="DIR",
                          help="normals that look defective (smudge, dust, reflection), added as hard_negative "
                               "rows and split like the other normals (repeatable)")
    importer.add_argument("--roi", type=Path, metavar="MASK_OR_DIR",
                          help="region of interest (where inspection happens, e.g. the screen on a fixture): one "
                               "mask for every image, or a folder of <group>.png masks; runs then also score "
                               "inside it (run --roi)")
    calibrate = data_sub.add_parser(
        "calibrate", help="how hard a dataset is for its reference detector (AUROC by severity, val-test gap, ...)"
    )
    calibrate.add_argument("dataset", nargs="?", default="smartphone-synth",
                           help="a registered dataset or manifest:PATH (default: smartphone-synth)")
    calibrate.add_argument("--method", help="reference method (default: the dataset's own reference)")
    calibrate.add_argument("--weights", choices=("auto", "pretrained", "substitute", "random"),
                           help="weights mode (default: the dataset's own reference)")
    calibrate.add_argument("--preset", default="default", choices=sorted(PRESETS))
    calibrate.add_argument("--seed", type=int, default=0)
    calibrate.add_argument("--out", type=Path, help="run folder for the reference cell (resumed when it is there)")
    calibrate.add_argument("--run-dir", type=Path, help="read the reference cell from this finished run instead")

    for name, text in (("figures", "regenerate all figures"), ("report", "write report.md and tables")):
        p = sub.add_parser(name, help=f"{text} from a stored run folder")
        p.add_argument("run_dir", type=Path)
        p.add_argument("--out", type=Path, help="output folder (default: the run folder)")
    bench = sub.add_parser("bench", help="overhead: each plugin's batch-1 latency against the raw library model it "
                                         "wraps; scaling: how fit/predict time and memory grow with the work")
    bench.add_argument("what", nargs="?", choices=("overhead", "scaling"), default="overhead")
    bench.add_argument("--methods", help="comma-separated method names (default: all registered)")
    bench.add_argument("--train-sizes", default=",".join(map(str, SCALING_TRAIN_SIZES)),
                       help="scaling: training-set sizes (comma-separated)")
    bench.add_argument("--sides", default=",".join(map(str, SCALING_SIDES)),
                       help="scaling: input sides in pixels for methods that declare resolution options")
    bench.add_argument("--point-timeout", type=float, default=600.0,
                       help="scaling: seconds per point; a curve stops at its first point over it")
    bench.add_argument("--preset", choices=sorted(PRESETS), default="default",
                       help="scaling: the preset the points are measured at (methods whose training follows the "
                            "preset need the curves of the preset a run uses)")
    bench.add_argument("--no-twins", action="store_true",
                       help="scaling: leave out the library versions timed beside methods (anomalib's PatchCore)")
    bench.add_argument("--images", type=int, default=10, help="timed images per method")
    bench.add_argument("--warmup", type=int, default=2, help="untimed calls before timing")
    bench.add_argument("--weights", choices=WEIGHT_CHOICES, default="auto")
    bench.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    bench.add_argument("--out", type=Path, help="overhead: also write the results as JSON here; scaling: the "
                                                "output folder (default: results/scaling, or results/scaling-PRESET "
                                                "for a preset other than default)")
    docs = sub.add_parser("docs", help="the docs' numbers from the stored reference run (docs/reference-run)")
    docs.add_argument("action", choices=("check", "write", "store"),
                      help="check: list every tagged doc number the reference run does not give; write: rewrite "
                           "them from it; store RUN_DIR: make RUN_DIR the reference run, then write")
    docs.add_argument("run_dir", nargs="?", type=Path, help="with store: the run folder to keep")
    docs.add_argument("--name", help="with store: keep it as docs/reference-run-NAME (a run a page quotes as NAME:)")
    inspect = sub.add_parser("inspect", help="a QC page (HTML + JSON) of what a saved model says about images")
    inspect.add_argument("run_dir", type=Path, help="a run folder written with --save-models")
    inspect.add_argument("images", nargs="*", help="image files, folders of images, or a manifest (.csv/.parquet)")
    inspect.add_argument("--method", required=True)
    inspect.add_argument("--variant", help="which variant's model (needed when several were saved)")
    inspect.add_argument("--seed", type=int, help="which seed's model (needed when several were saved)")
    inspect.add_argument("--split", choices=("test",), help="read the run's own test split, with its masks")
    inspect.add_argument("--out", type=Path, help="output folder (default: <run_dir>/inspect)")
    inspect.add_argument("--weights-dir", type=Path, help="where real backbone weights are (as for run)")
    inspect.add_argument("--device", default="cpu")
    inspect.add_argument("--unit", metavar="REGEX",
                         help="images of one physical unit (a phone) share what this finds in their names (group "
                              "'unit', else the first group, else the match): the page gives one verdict per unit")
    inspect.add_argument("--roi", type=Path, metavar="MASK",
                         help="region of interest of the given image files and folders (a mask of their aspect "
                              "ratio); manifest rows and --split test bring their own")
    merge = sub.add_parser("merge", help="combine shard run folders into one (cells merge by key)")
    merge.add_argument("sources", type=Path, nargs="+", help="shard run folders")
    merge.add_argument("--out", type=Path, required=True, help="merged run folder")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("faiss.loader", "fontTools", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    handlers = {"run": cmd_run, "list": cmd_list, "weights": cmd_weights, "data": cmd_data,
                "figures": cmd_figures, "report": cmd_report, "merge": cmd_merge, "bench": cmd_bench,
                "inspect": cmd_inspect, "docs": cmd_docs}
    try:
        return handlers[args.command](args)
    except (UsageError, ValueError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _run_config(args: argparse.Namespace):  # noqa: ANN202 - returns RunConfig
    from benchmarks.data.loaders import DATASETS, PATH_KINDS
    from benchmarks.plugins.registry import BASELINES, load_plugins
    from benchmarks.running.config import RunConfig, parse_shard

    load_plugins()
    methods = BASELINES.names() if args.all else _split(args.methods)
    if not methods:
        raise UsageError("no methods given (use --all or --methods a,b)")
    for method in methods:
        BASELINES.get(method)  # raises with "did you mean"
    datasets = _split(args.datasets)
    if not datasets:
        raise UsageError("no datasets given")
    for dataset in datasets:
        kind, sep, _ = dataset.partition(":")
        if not (sep and kind in PATH_KINDS):
            DATASETS.get(dataset)
    try:
        seeds = tuple(int(s) for s in _split(args.seeds))
    except ValueError:
        raise UsageError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    if args.weights == "random" and args.weights_dir:
        raise UsageError("--weights random contradicts --weights-dir (nothing would be loaded)")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"--device {args.device} requested but CUDA is not available")
    method_options = _method_options(args.option, methods)
    preset = get_preset(args.preset)
    if args.cell_timeout is not None:
        preset = preset.with_overrides(cell_timeout_s=args.cell_timeout)
    return RunConfig(
        methods=tuple(methods), datasets=tuple(datasets), seeds=seeds or (0,), preset=preset,
        weights=args.weights, weights_dir=args.weights_dir, device=args.device,
        out=(args.out or default_results_root() / args.preset).resolve(), force=args.force,
        executor=args.executor, shard=parse_shard(args.shard) if args.shard else None,
        variants=tuple(_split(args.variants)) or None, method_options=method_options,
        save_models=args.save_models, roi=args.roi,
    )


def _method_options(pairs: list[str], methods: list[str]) -> dict[str, dict[str, object]]:
    """`--option` pairs, checked against each method's declared options before anything runs."""
    from benchmarks.plugins.options import OptionError, options_from_mapping, parse_option_args
    from benchmarks.plugins.registry import BASELINES

    parsed = parse_option_args(pairs, methods)
    for method, values in parsed.items():
        options = BASELINES.get(method).meta.options
        if options is None:
            raise OptionError(f"{method} declares no options; cannot set {', '.join(sorted(values))}")
        # the options class's own `from_mapping` adds the plugin's range checks to the type checks
        if hasattr(options, "from_mapping"):
            options.from_mapping(values)
        else:
            options_from_mapping(options, values, method)
    return parsed


def cmd_run(args: argparse.Namespace) -> int:
    from benchmarks.data.loaders import load_dataset
    from benchmarks.reporting.summary import format_summary
    from benchmarks.running.compute import machine_gemm_peak
    from benchmarks.running.runner import run

    config = _run_config(args)
    for dataset in config.datasets:  # refuse an invalid dataset before any model work
        load_dataset(dataset, scale=config.preset.data_scale)
    plan = _forecast(config, args)
    if args.dry_run:
        print(plan or "no `bench scaling` results to predict from: run `python -m benchmarks bench scaling` first "
                      f"(or pass --scaling DIR); the grid has {len(_grid(config))} cell(s)")
        return 0
    if plan:
        print(plan)
    peak = machine_gemm_peak(config.device, measure=True)  # once per run, before any cell; cells read it
    log.info("fp32 GEMM peak of this machine: %.1f GFLOP/s (%s)", peak.gflops, peak.library)
    summary = run(config)
    print(format_summary(summary))
    if not args.no_report and (summary.ran or summary.resumed):
        _write_outputs(config.out)
    return 0


def _grid(config) -> list:  # noqa: ANN001 - RunConfig -> list[CellSpec]
    from benchmarks.running.runner import expand_grid

    return expand_grid(config)


def scaling_dir(preset: str) -> Path:
    """Where `bench scaling --preset PRESET` writes by default and where `run --dry-run` looks."""
    return default_results_root() / ("scaling" if preset == "default" else f"scaling-{preset}")


def _forecast(config, args: argparse.Namespace) -> str | None:  # noqa: ANN001 - config: RunConfig
    """The grid with each cell's predicted seconds, when `bench scaling` results exist; else None."""
    from benchmarks.running.forecast import forecast_cells, format_forecast
    from benchmarks.running.scaling import load_scaling

    source = args.scaling
    if source is None:
        found = [d for d in (scaling_dir(config.preset.name), scaling_dir("default")) if (d / "scaling.json").is_file()]
        if not found:
            return None
        source = found[0]
    scaling = load_scaling(source)
    return format_forecast(forecast_cells(config, scaling), report=not args.no_report, scaling_source=str(source))


def _write_outputs(run_dir: Path) -> None:
    try:
        from benchmarks.reporting.report import write_report

        print(f"report: {write_report(run_dir)} (figures in {run_dir / 'figures'})")
    except Exception as exc:  # the results are stored; a reporting bug must not hide them
        log.error("writing the report failed (results are safe in %s): %s", run_dir, exc)


def cmd_list(args: argparse.Namespace) -> int:
    if args.what == "weights":
        return cmd_weights(args)
    if args.what == "datasets":
        from benchmarks.data.loaders import DATASETS, dataset_names

        for name in dataset_names():
            loader = DATASETS.get(name.split(":")[0])
            doc = (loader.__doc__ or "").strip().splitlines()[0] if loader.__doc__ else ""
            print(f"{name:24s} {doc}")
        return 0
    from benchmarks.plugins.registry import BASELINES, FAMILIES, load_plugins

    problems = load_plugins()
    if args.options:
        return _list_options(BASELINES.names())
    rows = []
    for name in BASELINES.names():
        meta = BASELINES.get(name).meta
        variants = ", ".join(f"{v}{'*' if v in meta.default_variants else ''}" for v in meta.variants)
        rows.append((name, meta.backbone, meta.weights_id, str(meta.input_size), variants, meta.paper))
    header = ("method", "backbone", "weights id", "input", "variants (* = default)", "paper")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    for prefix, family in sorted(FAMILIES.items()):
        print(f"{prefix}:<member>  {family.description}")
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    return 0


def _list_options(methods: list[str]) -> int:
    from benchmarks.plugins.options import describe_options
    from benchmarks.plugins.registry import BASELINES

    for name in methods:
        options = BASELINES.get(name).meta.options
        print(f"{name}:" + ("" if options else " (no options)"))
        for key, kind, default in describe_options(options) if options else []:
            print(f"  --option {name}.{key}=...  {kind}, default {default}")
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    """Each backbone once: where it was found, or what stands in for it offline and how to provide it."""
    from benchmarks.plugins.registry import BASELINES, load_plugins
    from benchmarks.plugins.weights import WeightsResolver, describe

    load_plugins()
    resolver = WeightsResolver(mode="auto", weights_dir=getattr(args, "weights_dir", None), allow_download=False)
    users: dict[str, list[tuple[str, bool]]] = {}  # spec key -> (method, offers a bundled substitute)
    specs = {}
    for name in BASELINES.names():
        method_specs = BASELINES.get(name).meta.weight_specs
        bundled = any(spec.bundled for spec in method_specs)
        for spec in method_specs:
            specs.setdefault(spec.key, spec)
            users.setdefault(spec.key, []).append((name, bundled))
    for key, spec in specs.items():
        info = describe(spec, resolver)
        methods = ", ".join(m for m, _ in users[key])
        if info["found"]:
            status = f"found: {info['path']} ({info['source']})"
        elif spec.bundled:
            status = "NOT FOUND -> the methods above fall back to random init"
        else:
            subst = [m for m, offers in users[key] if offers]
            rest = [m for m, offers in users[key] if not offers]
            status = "NOT FOUND -> " + "; ".join(
                ([f"bundled substitute for {', '.join(subst)}"] if subst else [])
                + ([f"random init for {', '.join(rest)}"] if rest else []))
        print(f"{spec.key} [{spec.library}: {spec.model_id}{' / ' + spec.tag if spec.tag else ''}] (used by {methods})")
        print(f"    {status}")
        if not info["found"]:
            print(f"    {info['how_to_provide']}")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    if args.data_command == "generate":
        from benchmarks.data.smartphone.generate import DATASET_PROTOCOLS, generate_smartphone_synth

        protocol = DATASET_PROTOCOLS[args.name]
        manifest = generate_smartphone_synth(args.out, seed=args.seed, scale=args.scale, protocol=protocol)
        print(f"wrote {manifest} and {manifest.parent / 'montage.png'}")
        return 0
    if args.data_command == "calibrate":
        return cmd_calibrate(args)
    if args.data_command == "import":
        return cmd_data_import(args)
    from benchmarks.data.manifest import read_table, validate_table

    path = args.manifest.resolve()
    _, problems = validate_table(read_table(path), path.parent, decode=True)
    errors = [p for p in problems if p.severity == "error"]
    for problem in problems:
        print(problem)
    print(f"{path}: {len(errors)} error(s), {len(problems) - len(errors)} warning(s)")
    return 1 if errors else 0


def cmd_data_import(args: argparse.Namespace) -> int:
    """Import a published set; its summary names the split file and the run command to use next."""
    import shlex

    from benchmarks.data.importer import describe, import_dataset

    words = ["python", "-m", "benchmarks", "data", "import", str(args.src), "--out", str(args.out),
             "--layout", args.layout, "--seed", str(args.seed), "--val-fraction", f"{args.val_fraction:g}"]
    if args.category is not None:
        words += ["--category", args.category]
    if args.test_fraction is not None:
        words += ["--test-fraction", f"{args.test_fraction:g}"]
    if args.supervised_train:
        words += ["--supervised-train", f"{args.supervised_train:g}"]
    if args.copy:
        words.append("--copy")
    if args.normal:
        words += ["--normal", *args.normal]
    for flag, value in (("--years", args.years), ("--year-from", args.year_from), ("--test-years", args.test_years)):
        if value is not None:
            words += [flag, str(value)]
    for flag, folders in (("--generated", args.generated), ("--hard-negatives", args.hard_negatives)):
        for folder in folders:
            words += [flag, str(folder)]
    if args.roi is not None:
        words += ["--roi", str(args.roi)]
    result = import_dataset(args.src, args.out, layout=args.layout, category=args.category, seed=args.seed,
                            val_fraction=args.val_fraction, test_fraction=args.test_fraction,
                            supervised_train=args.supervised_train, copy=args.copy, command=shlex.join(words),
                            normal=args.normal, years=args.years, year_from=args.year_from,
                            test_years=args.test_years, generated=args.generated,
                            hard_negatives=args.hard_negatives, roi=args.roi)
    print("\n".join(describe(result)))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Run (or read) the dataset's reference cell and print its calibration table."""
    from benchmarks.plugins.registry import BASELINES, load_plugins
    from benchmarks.reporting.calibration import (
        CALIBRATION_REFERENCES,
        CalibrationReference,
        calibrate_cell,
        format_calibration,
        write_calibration,
    )
    from benchmarks.results.store import RunStore
    from benchmarks.running.config import RunConfig
    from benchmarks.running.runner import run

    reference = CALIBRATION_REFERENCES.get(args.dataset)
    method = args.method or (reference.method if reference else None)
    if method is None:
        raise UsageError(f"{args.dataset} has no calibration reference: name one with --method")
    weights = args.weights or (reference.weights if reference else "auto")
    targets = (reference or CalibrationReference(method, weights)).targets
    load_plugins()
    BASELINES.get(method)
    if args.run_dir:
        run_dir = args.run_dir.resolve()
        records = [r for r in RunStore(run_dir).latest().values()
                   if r.method == method and r.dataset == args.dataset and r.seed == args.seed]
        if not records:
            raise UsageError(f"{run_dir} holds no {method} cell on {args.dataset} (seed {args.seed})")
        record = records[0]
    else:
        run_dir = (args.out or default_results_root() / "calibration" / args.dataset).resolve()
        preset = get_preset(args.preset)
        config = RunConfig(methods=(method,), datasets=(args.dataset,), seeds=(args.seed,), preset=preset,
                           weights=weights, out=run_dir, variants=None)
        summary = run(config)
        record = (summary.ran or [RunStore(run_dir).latest()[k] for k in summary.resumed])[0]
    calibration = calibrate_cell(record, run_dir, targets)
    produced_by = (f"{record.weights_tag or record.weights} weights, preset {record.preset}, "
                   f"{record.hardware.get('cpu', '?')}")
    print(format_calibration(calibration, produced_by))
    out = run_dir / f"calibration-{record.cell_key}.json"
    write_calibration(calibration, out)
    print(f"wrote {out}")
    return 0


def cmd_figures(args: argparse.Namespace) -> int:
    from benchmarks.reporting.figures import write_figures

    paths = write_figures(args.run_dir, args.out)
    print(f"wrote {len(paths)} figure files to {args.out or args.run_dir}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from benchmarks.reporting.report import write_report

    print(f"wrote {write_report(args.run_dir, args.out, figures=False)}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """Load the saved model, read the images, write the QC page; print where and how long it took."""
    import re
    import time

    from benchmarks.inspection.inputs import (
        cell_dataset,
        images_from_arguments,
        kind_references,
        test_split_images,
    )
    from benchmarks.inspection.qc_page import write_qc_page
    from benchmarks.inspection.readings import read_images
    from benchmarks.inspection.saved_models import load_saved, saved_cell
    from benchmarks.running.environment import cpu_model

    if bool(args.images) == bool(args.split):
        raise UsageError("give images (files, folders or a manifest) or --split test, not both or neither")
    start = time.perf_counter()
    cell = saved_cell(args.run_dir, args.method, args.variant, args.seed)
    plugin, stamp = load_saved(args.run_dir, cell, device=args.device, weights_dir=args.weights_dir)
    loaded = time.perf_counter()
    try:
        unit = re.compile(args.unit) if args.unit else None
    except re.error as exc:
        raise UsageError(f"--unit {args.unit!r} is not a regular expression: {exc}") from None
    images = test_split_images(cell, unit) if args.split else images_from_arguments(args.images, unit, args.roi)
    if not images:
        raise UsageError("no images found in the given paths")
    try:
        references = kind_references(cell_dataset(cell))
    except (OSError, ValueError) as exc:  # the run's dataset is not on this machine: no kind guesses
        print(f"note: no defect-kind guesses: the run's dataset {cell.dataset} could not be read ({exc})")
        references = None
    readings = read_images(plugin, stamp, images, references)
    read = time.perf_counter()
    source = f"{cell.dataset} test split" if args.split else f"{len(images)} image(s)"
    title = f"QC inspection: {stamp.method} / {stamp.variant} on {source}"
    files = write_qc_page(readings, stamp, args.out or args.run_dir / "inspect", title,
                          f"{cpu_model()}, {args.device}")
    done = time.perf_counter()
    errors = sum(r.error is not None for r in readings)
    print(f"wrote {files.html}\nwrote {files.json}")
    print(f"{len(images)} images ({errors} unreadable) in {done - start:.1f} s: model load {loaded - start:.1f} s, "
          f"reading {1000 * (read - loaded) / len(images):.0f} ms per image, page {done - read:.1f} s "
          f"[{stamp.weights_tag} weights, {cpu_model()}]")
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    """Check, write or re-store the docs' reference-run numbers (benchmarks.reporting.doc_numbers)."""
    from benchmarks.reporting.doc_numbers import check, count_tags, store, write

    if args.action == "store":
        if args.run_dir is None:
            raise UsageError("docs store needs the run folder: docs store RUN_DIR")
        print(f"stored {store(args.run_dir, REPO_ROOT, args.name)}")
    elif args.run_dir is not None:
        raise UsageError(f"docs {args.action} takes no run folder")
    if args.action in ("write", "store"):
        print(f"rewrote {write(REPO_ROOT)} number(s)")
    problems = check(REPO_ROOT)
    for problem in problems:
        print(problem)
    print(f"{count_tags(REPO_ROOT)} tagged number(s) in README.md and docs/*.md, {len(problems)} disagreeing "
          "with docs/reference-run")
    return 1 if problems else 0


def cmd_bench(args: argparse.Namespace) -> int:
    from benchmarks.plugins.registry import BASELINES, load_plugins
    from benchmarks.running.bench import format_results, run_bench, write_results

    load_plugins()
    methods = _split(args.methods) or None
    for method in methods or []:
        BASELINES.get(method)  # raises with "did you mean"
    if args.what == "scaling":
        return cmd_bench_scaling(args, methods or BASELINES.names())
    if args.images < 1:
        raise UsageError("--images must be at least 1")
    results = run_bench(methods, n_images=args.images, device=args.device, weights=args.weights,
                        warmup=args.warmup)
    print(format_results(results))
    if args.out:
        write_results(results, args.out, args.device)
        print(f"written: {args.out}")
    return 0


def cmd_bench_scaling(args: argparse.Namespace, methods: list[str]) -> int:
    """Measure every point (one process each), then draw the curves and print the exponents."""
    from benchmarks.reporting.figures.scaling import draw_scaling, format_scaling
    from benchmarks.running.scaling import plan_points, run_scaling, twin_pairs

    try:
        sizes = sorted({int(v) for v in _split(args.train_sizes)})
        sides = sorted({int(v) for v in _split(args.sides)})
    except ValueError:
        raise UsageError("--train-sizes and --sides take comma-separated integers") from None
    if not sizes or min(sizes) < 1 or (sides and min(sides) < 16):
        raise UsageError("--train-sizes must be positive and --sides at least 16")
    out = (args.out or scaling_dir(args.preset)).resolve()
    specs = plan_points(methods, args.weights, sizes, sides, with_twins=not args.no_twins, preset=args.preset)
    pairs = [] if args.no_twins else twin_pairs(methods)
    print(f"{len(specs)} points; nothing else should run while they are timed. Writing {out}/scaling.json")
    result = run_scaling(specs, out, timeout_s=args.point_timeout,
                         on_point=lambda p: print(f"  {p.label:40s} {p.axis:10s} {p.size:5d}  {p.status}"
                                                  + (f"  fit {p.fit_s:.1f} s, predict {p.predict_ms:.0f} ms/image"
                                                     if p.status == "ok" else f"  {p.error}"), flush=True),
                         pairs=pairs)
    paths = draw_scaling(result, out)
    print(format_scaling(result))
    print(f"figures: {', '.join(str(p) for p in paths if p.suffix == '.png')}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from benchmarks.results.merge import merge_runs

    missing = [str(s) for s in args.sources if not (s / "runs.jsonl").is_file()]
    if missing:
        raise UsageError(f"not run folders (no runs.jsonl): {', '.join(missing)}")
    print(f"merged {merge_runs(args.sources, args.out)} cell(s) into {args.out}")
    return 0
