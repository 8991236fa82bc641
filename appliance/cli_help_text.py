"""Every command's longer description and example command lines, for ``--help``.

``cli_help.apply_help`` puts them on the parser; a command's one-line ``help`` stays with the
area that registers it.
"""

from __future__ import annotations

# command path -> (description, examples); every command of `appliance`, group or leaf, has an
# entry (tests/test_cli.py checks that none is missing and none is left over).
COMMAND_HELP: dict[str, tuple[str, tuple[str, ...]]] = {
    "demo": (
        "Run the whole system on this machine: a private mosquitto, the back office and edge "
        "daemons on synthetic customers. The results stay in the store the back-office commands "
        "read by default (./state/backoffice.sqlite3 with the repository's config.yaml).",
        ("appliance demo", "appliance demo --devices 3 --count 5",
         "appliance demo --throwaway"),
    ),
    "edge": (
        "The kiosk daemon: camera, quality gate, measurement, classification, durable outbox, "
        "MQTT. systemd runs it (deploy/appliance-edge.service).",
        ("appliance edge --config /etc/appliance/config.yaml",
         "appliance edge --out-of-order --screen-port 8090"),
    ),
    "backoffice": (
        "The back-office ingest worker: stores results and fleet status from the broker. Run "
        "several with the same share group to split the load; --retire takes one out of "
        "service for good (docs/delivery.md). It needs a config file (./config.yaml or "
        "--config), as the edge daemon does: it joins the result group of the broker named "
        "there, never of one the built-in defaults would pick. As it starts, before it "
        "takes any message, it applies the erasure journal's lines the store lacks (a "
        "restore or an erasure cut short), each named; a journal it cannot use stops it "
        "(exit 2, naming the file and line).",
        ("appliance backoffice", "appliance backoffice --config backoffice.yaml",
         "appliance backoffice --config backoffice-2.yaml --retire"),
    ),
    "fleet": (
        "The kiosks the back office has heard from, a row each, in the table's order: site, "
        "device id, state (online/offline), last seen, its clock as last read (ahead of or "
        "behind the back office's), software version, model, camera (as last reported), "
        "outbox depth, how long the oldest un-sent result has waited, results dropped.",
        ("appliance fleet", "appliance fleet --json | head",
         "appliance fleet --store sqlite:///state/backoffice.sqlite3"),
    ),
    "fleet resend": (
        "Have the kiosks send again the results the back office confirmed at or after TIME (by "
        "the back office's clock), which each keeps edge.keep_confirmed_h (48 h by default): after "
        "`store restore`, which prints the command with its time and has applied the erasure "
        "journal's erasures made since the backup again. Publishes on each kiosk's cmd/resend "
        "(every kiosk whose status the broker holds, or --device), logged in as the config's "
        "mqtt.username (the rollout login), with the password --password-file holds (a file "
        "its owner alone may read), else $APPLIANCE_MQTT_PASSWORD's; the store keeps each "
        "result once. Exit 0 every kiosk asked, 1 some not (named), 2 nothing sent.",
        ("appliance fleet resend --since 2026-12-07T02:45:00Z --config rollout.yaml "
         "--password-file rollout.password",
         "appliance fleet resend --since 2026-12-07T02:45:00Z --device lab/kiosk-1 "
         "--config rollout.yaml"),
    ),
    "results": (
        "Read the results the back office stored: the newest ones, an export to a file, and the "
        "messages it refused (dead letters), and those of them it would store now. Each takes "
        "--store or --config to pick the store.",
        ("appliance results query --limit 10", "appliance results export --format csv "
         "--out results.csv", "appliance results dead-letters"),
    ),
    "results query": (
        "Print the newest stored results (newest first) and how many match in all. Columns: "
        "placed_at (the capture as the back office places it, its kiosk's clock as read: the "
        "order and --since go by it), captured_at (the time the kiosk's own clock wrote), site, "
        "device_id, measurement_id, kime_score, pore_count, label (the grade; A/B: a near-tie "
        "between two) and age_band (as the customer chose it on the kiosk screen). --device "
        "DEVICE selects that device id at every site (each site names its own kiosks); --site "
        "SITE one site's results; --device SITE/DEVICE (or --site with --device) one kiosk.",
        ("appliance results query", "appliance results query --limit 10 --device kiosk-demo-1",
         "appliance results query --site demo",
         "appliance results query --device demo/kiosk-demo-1",
         "appliance results query --since 2026-11-01T09:00:00Z"),
    ),
    "results export": (
        "Write stored results to a CSV, JSON Lines or Parquet file (or CSV/JSONL to stdout). "
        "An existing file is kept unless --force. --site, --device and --since select as for "
        "`results query`; a site or device no stored result comes from and no kiosk of the "
        "fleet has is refused, nothing written.",
        ("appliance results export --format csv --out results.csv",
         "appliance results export --site demo --out results.csv",
         "appliance results export --format parquet --out results.parquet",
         "appliance results export --format jsonl | head"),
    ),
    "results dead-letters": (
        "Messages the back office could not store, newest first, with the reason. --site, "
        "--device DEVICE or SITE/DEVICE select by the topic each came on, as `results query` "
        "selects results: {prefix}/{site}/{device}/..., with the config's mqtt.topic_prefix.",
        ("appliance results dead-letters", "appliance results dead-letters --limit 5",
         "appliance results dead-letters --site demo",
         "appliance results dead-letters --device demo/kiosk-demo-1"),
    ),
    "results retry": (
        "Store the results kept whole in the dead letters that the back office takes now (a "
        "kiosk clock that ran ahead has been caught up with, a fix installed); they leave the "
        "dead letters, the rest stay. With `results erase`, the results commands that change "
        "the store.",
        ("appliance results retry --dry-run", "appliance results retry"),
    ),
    "results erase": (
        "Erase one subject's results (consent withdrawn) or one result, with the dead letters "
        "holding them; says how many and asks first on a terminal (--yes: do not ask). An "
        "audit record (when, the OS user, what was asked, how many) stays in the store, and "
        "a kiosk that sends an erased result again has it confirmed but not stored; a "
        "subject's result arriving later is judged by the back office's reading of its "
        "kiosk's clock, and held as a dead letter where that cannot tell (`results release`). "
        "Each erasure is also a line of the erasure journal (store.erasure_journal, else "
        "erasure-journal.jsonl in state_dir), written before the store commits, which `store "
        "restore` applies again. The running back-office workers ask each kiosk that sent an "
        "erased result to delete the copy it keeps for `fleet resend` (cmd/forget), at once "
        "and at each of its connects, for that kiosk's edge.keep_confirmed_h (as its status "
        "says it; else the back office's or 48 h, whichever is longer; at most 720 h). Files "
        "exported before are "
        "outside the store.",
        ("appliance results erase --subject c7f3e9 --yes",
         "appliance results erase --result 019a7c2e-5b10-7c3a-9d41-2f6e8b0a1c55"),
    ),
    "results release": (
        "Store a result held for its subject's erasure: one that arrived after the erasure "
        "and that its kiosk's clock, as the back office read it, could not place before or "
        "after it (its dead letter's reason begins 'held for release' and names the id). Run "
        "it where the person agreed again after the erasure; `results erase --subject` "
        "removes the held results instead. Asks first on a terminal (--yes: do not ask); the "
        "release is recorded in the audit (`results erasures`, kind release).",
        ("appliance results release --result 019a7c2e-5b10-7c3a-9d41-2f6e8b0a1c55",),
    ),
    "results erasures": (
        "The audit the store keeps of each erasure (`results erase`), each release of a held "
        "result (`results release`) and each retention run "
        "that removed anything: when, the OS user (or back-office worker), what was asked for "
        "and how many results and dead letters went; newest first. Reads only. "
        "--check-journal names the erasures and releases of the erasure journal the store "
        "lacks (exit 1 where any; 2 for a damaged journal line, named by file and line, or a "
        "journal that is a link, another user's or writable by others); a note on stderr "
        "where the store holds erasures no journal line names (a journal lost and not put "
        "back); --apply-journal applies them, each with its own time, as `store restore` does, "
        "and names each line it applied (a line is applied as written, its user and time "
        "too: read --check-journal first).",
        ("appliance results erasures", "appliance results erasures --limit 5",
         "appliance results erasures --check-journal"),
    ),
    "results prune": (
        "Remove the results captured more than DAYS days ago, and the dead letters received "
        "before then, a few hundred at a time (what backoffice.retention_days has each "
        "worker do every hour); says how many and asks first on a terminal (--yes: do not "
        "ask). The run is recorded in the store, and a kiosk that sends such a result again "
        "has it confirmed but not stored. Files exported before are outside the store.",
        ("appliance results prune --older-than 1825",
         "appliance results prune --older-than 1825 --yes"),
    ),
    "report": (
        "Reports over the stored results, written as an HTML page with its figures.",
        ("appliance report cohort --out report",),
    ),
    "report cohort": (
        "Texture and pore features by age band: box plots, correlations with confidence "
        "intervals, repeat measurements of one subject. Needs results with an age band. An "
        "--out folder holding an earlier report is refused unless --force. --site and --device "
        "select the results as for `results query` (the page and summary.json say which); a "
        "site or device no stored result comes from and no kiosk of the fleet has is refused, "
        "nothing written.",
        ("appliance report cohort --out report", "xdg-open report/index.html",
         "appliance report cohort --out report --force",
         "appliance report cohort --site demo --out report --force"),
    ),
    "store": (
        "The back-office store: its schema, its backups and their restores. Writers and "
        "servers (backoffice, console, demo, models deploy) migrate it when they start; read "
        "commands (fleet, results, report, models status, console reference) never change it "
        "and refuse a store that is not up to date.",
        ("appliance store migrate", "appliance store migrate --store "
         "postgresql://appliance@db.example.org:5432/appliance",
         "appliance store backup --out /var/backups/appliance/backoffice.sqlite3",
         "appliance store restore /var/backups/appliance/backoffice.sqlite3"),
    ),
    "store migrate": (
        "Create the store's tables, or add what newer code needs (versioned migrations, each "
        "run once; the pathology tables too). Exit 0 when up to date, 2 when the config or the "
        "store is unusable (the message names the database).",
        ("appliance store migrate", "appliance store migrate --config backoffice.yaml",
         "appliance store migrate --store sqlite:///state/backoffice.sqlite3"),
    ),
    "store backup": (
        "A consistent copy of the store while the back office runs and ingests: SQLite through "
        "its online backup API (every batch committed before it, none half), PostgreSQL with "
        "pg_dump (postgresql-client) on one snapshot. Written to a hidden file beside FILE, "
        "checked, owner-only, flushed and renamed: a full disk or a kill leaves the previous "
        "backup or none, never part of one; FILE is never the store itself. --keep N: FILE's "
        "name with the time in it (a PostgreSQL store's NAME-TIME.dump, a pg_dump archive), the "
        "oldest such beyond the N newest removed, each with its journal copy. Beside the backup, "
        "the erasure journal as it was then (FILE.erasure-journal.jsonl, owner-only), which a "
        "restore after a lost disk applies. Prints what it "
        "holds: results per kiosk, the newest one's receipt. Keep backups on another disk. "
        "Exit 0 done, 1 failed on the way, 2 refused.",
        ("appliance store backup --out /var/lib/appliance-backup/backoffice.sqlite3 --keep 7",
         "appliance store backup --out /var/backups/appliance/backoffice.sqlite3 --force",
         "appliance store backup --config backoffice.yaml --out /mnt/offsite/2026-12-07.sqlite3",
         "appliance store backup --store postgresql://appliance@/appliance "
         "--out /srv/backup/store.dump"),
    ),
    "store restore": (
        "Put the store back from a file `store backup` wrote, the back office's workers and "
        "console stopped (a store another program has open is refused). A damaged or foreign "
        "file, one a newer appliance wrote, or one carrying what the appliance never makes "
        "(triggers, views, functions, another program's tables; a pg_dump archive entry whose "
        "SQL is not the appliance's), is refused naming it; an older one is migrated "
        "(PostgreSQL: none of the archive's SQL runs; its rows are loaded into tables the "
        "appliance makes). "
        "A store holding results is replaced only with --force (SQLite: moved aside as "
        "NAME.replaced-TIME, never removed; PostgreSQL: its tables dropped, no copy kept). "
        "Applies again the erasures and releases of the erasure journal (`results erase`) "
        "that the backup lacks, each with its own time (SQLite: into the restored copy before "
        "it replaces the store, so a restore killed on the way brings no erased result back; "
        "PostgreSQL: once the backup is in place), into a store of its own too: the live "
        "journal, else (a lost disk) the newest copy `store backup` wrote beside the backup, "
        "put back as the live one; a damaged journal line is refused before anything is "
        "restored. "
        "Prints what the restored store holds, what the journal erased, and the "
        "`fleet resend` command that has the kiosks send again what the back office confirmed "
        "after the backup, which they keep edge.keep_confirmed_h, with the restore's own "
        "--config (README, \"Back up and "
        "restore the back office\"). To check a backup, restore it into a store of its own "
        "(--store) and remove that after (PostgreSQL: a database that is there, which the "
        "login owns: `createdb --owner LOGIN NAME` as user postgres; the restore makes the "
        "tables). Exit 0 done, 1 failed on the way, 2 refused.",
        ("appliance store restore /var/backups/appliance/backoffice.sqlite3 "
         "--config /etc/appliance/backoffice.yaml",
         "appliance store restore backoffice-20261207T031500.000000Z.sqlite3 "
         "--store sqlite:///check.sqlite3",
         "appliance store restore backoffice.sqlite3 --force",
         "appliance store restore store.dump --store postgresql://appliance@/appliance"),
    ),
    "analyze": (
        "Measure 1280x960 microscope frames offline: quality, texture, pores, colour and the "
        "texture grade (shipped model unless the config names another). No broker needed. "
        "Frames are measured at the config's skin.um_per_px unless --um-per-px is given; a "
        "frame's NAME.json sidecar scale (appliance synth skin) is named, never used.",
        ("appliance analyze frame.jpg", "appliance analyze shots/*.jpg --json",
         "appliance analyze frame.jpg --overlay overlays --white white-tile.jpg",
         "appliance analyze frames/skin-1-00003.jpg --um-per-px 10.76"),
    ),
    "calibrate": (
        "Measure um_per_px from a photo of a stage micrometer (a scale of parallel lines a known "
        "distance apart). Anything that is not a regular line grating is refused with a reason, "
        "and so is a result skin.um_per_px would refuse (outside 0.5-30 um/px: check --mm); a "
        "result outside the validated 7-13 um/px is printed with a warning. At the 25x lens, "
        "lines 0.1 mm apart (the scale it was checked with) are about 10 px apart; the 0.01 mm "
        "graduations of a fine scale are about 1 px apart there and cannot be resolved.",
        ("appliance calibrate micrometer.jpg --mm 0.1",
         "appliance synth micrometer --out micrometer.png --um-per-px 9.6",
         "appliance calibrate micrometer.png --mm 0.1"),
    ),
    "config": (
        "Configuration: check a config file and the APPLIANCE__ environment overrides before "
        "the daemon reads them.",
        ("appliance config check", "appliance config check /etc/appliance/config.yaml"),
    ),
    "config check": (
        "Validate a config file (and the APPLIANCE__ environment overrides) as the daemon will: "
        "exit 2 naming the key path, the bad value and what was expected, or a missing file. "
        "Without a file named and no ./config.yaml it checks the built-in defaults with the "
        "overrides, as the other commands then use them, and says so; a file named that does "
        "not exist is an error.",
        ("appliance config check", "appliance config check /etc/appliance/config.yaml",
         "APPLIANCE__MQTT__PORT=1884 appliance config check --config config.yaml"),
    ),
    "synth": (
        "Make synthetic data with known ground truth: microscope skin frames with their true "
        "features, a stage-micrometer photo at a known um/px, and H&E cohorts with labels. "
        "Every number has a range (see each command's --help); a value outside it is refused, "
        "exit 2.",
        ("appliance synth skin --out frames --count 8 --seed 1",
         "appliance synth micrometer --out micrometer.png --um-per-px 9.6",
         "appliance synth he --out cohort --patients 20 --seed 3"),
    ),
    "synth skin": (
        "Synthetic 25x microscope skin frames with ground-truth JSON sidecars. Frames of the "
        "series (seed and index) already in --out are kept unless --force; others go beside.",
        ("appliance synth skin --out frames --count 8 --seed 1",
         "appliance synth skin --out frames --count 8 --seed 1 --start 8",
         "appliance synth skin --out old --count 20 --preset coarse --workers 2"),
    ),
    "synth micrometer": (
        "A photo of a stage micrometer at a known um/px (a short scale of lines 100 px tall), "
        "to try `appliance calibrate` on. An existing --out file is kept unless --force.",
        ("appliance synth micrometer --out micrometer.png --um-per-px 9.6",
         "appliance calibrate micrometer.png --mm 0.1"),
    ),
    "synth he": (
        "A synthetic H&E cohort: slides of MSI and MSS patients with labels.csv. A labels.csv "
        "or slides of the same names already in --out are kept unless --force.",
        ("appliance synth he --out cohort --patients 20 --seed 3",
         "appliance synth he --out big --patients 200 --msi-fraction 0.3 --workers 2"),
    ),
    "models": (
        "Build, check and evaluate the skin texture model, and send models to the fleet: a "
        "signed TUF repository, releases, staged rollouts, rollback and per-device status.",
        ("appliance models show", "appliance models repo init /srv/models",
         "appliance models status --repo /srv/models"),
    ),
    "models build-skin": (
        "Train, export, INT8-quantize and validate the skin texture model from a labelled "
        "table, into a new folder (the shipped model is never overwritten).",
        ("appliance models build-skin --data grades.csv --out build/v2 --version 2.0.0 "
         "--trained-on 'who graded what, where, when'",
         "appliance models build-skin --data models/data/skin-grades.parquet "
         "--out /tmp/rebuilt --created-at 2026-11-26T02:40:05Z",),
    ),
    "models evaluate": (
        "Accuracy, per-class precision/recall, confusion matrix and INT8/float agreement of a "
        "model on a labelled table.",
        ("appliance models evaluate build/v2/skin-texture-grade.int8.onnx --data grades.csv",),
    ),
    "models show": (
        "Check a model file and print its contract (features, labels, version, training data) "
        "and figures.",
        ("appliance models show", "appliance models show build/v2/skin-texture-grade.int8.onnx"),
    ),
    "models skin-table": (
        "A labelled feature table from synthetic skin, for build-skin.",
        ("appliance models skin-table --out table.parquet --rows 300 --workers 2",),
    ),
    "models repo": (
        "The TUF model repository the kiosks update from: create it with its keys, re-sign its "
        "short-lived timestamp, and serve its public files.",
        ("appliance models repo init /srv/models", "appliance models repo refresh /srv/models",
         "appliance models repo serve /srv/models --port 8470"),
    ),
    "models repo init": (
        "Create a TUF model repository: root, targets, snapshot, timestamp and the delegated "
        "fleet role with Ed25519 keys; prints where the keys are (move keys/root offline).",
        ("appliance models repo init /srv/models",
         "appliance models repo init /srv/models --keys root=3 --threshold root=2"),
    ),
    "models repo refresh": (
        "Re-sign the repository's timestamp, which expires quickly on purpose (run it from a "
        "timer well within the timestamp expiry), and any other role past half its validity "
        "whose keys are here. Exit 3: signed, but root or targets is past half its validity "
        "and its keys are offline (the warning says what to do); 2: an error.",
        ("appliance models repo refresh /srv/models",),
    ),
    "models repo serve": (
        "Serve the repository's public/ folder over HTTP for the kiosks (one back-office box; "
        "any web server or object store can serve it at scale).",
        ("appliance models repo serve /srv/models --port 8470",
         "appliance models repo serve /srv/models --host 0.0.0.0 --max-connections 200"),
    ),
    "models release": (
        "Sign a model into the repository with its name, version, feature schema, device types "
        "and self-test vectors (its own answers on rows of a labelled feature table).",
        ("appliance models release build/v2/skin-texture-grade.int8.onnx --repo /srv/models "
         "--version 2.0.0",),
    ),
    "models deploy": (
        "Roll a release out: signed assignments to canaries first, the rest in waves once the "
        "canaries report installed and healthy; halts by itself on failures (exit 1). Logs in as "
        "the config's mqtt.username (the rollout login) with the password --password-file holds "
        "(a file its owner alone may read), else $APPLIANCE_MQTT_PASSWORD's.",
        ("appliance models deploy skin-texture-grade 2.0.0 --repo /srv/models --all --canary 2",
         "APPLIANCE__MQTT__USERNAME=rollout appliance models deploy skin-texture-grade 2.0.0 "
         "--repo /srv/models --all --password-file rollout.password --config backoffice.yaml",
         "appliance models deploy skin-texture-grade 2.0.0 --repo /srv/models --devices k1,k2"),
    ),
    "models rollback": (
        "A signed decision to go back to an older release (kiosks refuse a plain downgrade); "
        "by default for every device assigned the model. The login and --password-file as for "
        "deploy.",
        ("appliance models rollback skin-texture-grade --to 1.0.0 --repo /srv/models",),
    ),
    "models yank": (
        "Withdraw a bad release, with the offline targets key (as release): the signed targets "
        "list it no more, in its place a record of when, by whom and why; no kiosk installs it "
        "from then on, one serving it goes back to the newest older release still signed (else "
        "its model before) at its next check, and deploy, rollback --to and release of that "
        "version are refused. Names the devices still assigned it and the rollback that takes "
        "them back now. Exit 0 withdrawn, 2 not released, withdrawn already or the key not at "
        "hand (nothing signed).",
        ("appliance models yank skin-texture-grade --version 1.2.0 --repo /srv/models "
         "--reason 'grades dark skin coarse'",),
    ),
    "models halt": (
        "Halt the model's running rollout now, from another terminal: its deploy withdraws the "
        "assignments not yet installed (putting back what they replaced) and records halted with "
        "who and why; a rollout whose deploy was killed is halted here. Exit 0 halted, 1 the "
        "deploy did not say so within 60 s, 2 none running (one that ended before the halt "
        "took hold, said with how it ended) or an error. The login and --password-file as for "
        "deploy.",
        ("appliance models halt skin-texture-grade --repo /srv/models --reason 'bad grades'",),
    ),
    "models status": (
        "Per device: the model version running, the version targeted, its last update state "
        "and why (with the rollout that set it). --history DEVICE: the kiosk's model reports "
        "the store holds, newest first (no --repo, no broker). The login and --password-file as "
        "for deploy.",
        ("appliance models status --repo /srv/models",
         "appliance models status --repo /srv/models --json",
         "appliance models status --history shop-1/kiosk-7"),
    ),
    "pathology": (
        "H&E pathology: score slides on this machine (run, submit), measure runs against labels "
        "(evaluate), or run the server that takes jobs over MQTT (serve) and send it jobs (job).",
        ("appliance pathology run cohort --out results",
         "appliance pathology evaluate --labels cohort/labels.csv --results results",
         "appliance pathology job list"),
    ),
    "pathology run": (
        "Score a folder of H&E slides: tissue mask, tiles, stain normalisation, tile model; "
        "writes results.csv, heatmaps and CAMs. An --out holding an earlier run is refused; "
        "--force replaces it whole.",
        ("appliance pathology run cohort --out results",
         "appliance pathology run cohort --out results --force"),
    ),
    "pathology submit": (
        "Score the given slide files.",
        ("appliance pathology submit slide1.png slide2.png --um-per-px 1.0 --out results",),
    ),
    "pathology evaluate": (
        "Clinical metrics of one or more runs against labels, with patient-bootstrap CIs, "
        "beside the paper's own figures.",
        ("appliance pathology evaluate --labels cohort/labels.csv --results results",
         "appliance pathology evaluate --labels cohort/labels.csv --results r1 r2 --json"),
    ),
    "pathology serve": (
        "The pathology server: jobs from MQTT (each run by one server), slides prepared in worker "
        "processes, tiles of all jobs batched for one backend, results in the back-office store. "
        "systemd runs it (deploy/appliance-pathology@.service). Exit 0: stopped; 1: the store "
        "could not be opened; 2: a bad config or model; 3: the broker refused the login; 4: "
        "another server with the same pathology.client_id started first (give each its own).",
        ("appliance pathology serve --config /etc/appliance/config.yaml",),
    ),
    "pathology job": (
        "Jobs of the pathology servers over MQTT: send slides as a job, list every job's state "
        "and the servers online, cancel a job.",
        ("appliance pathology job submit /srv/slides/*.jpg --um-per-px 1 --wait",
         "appliance pathology job list",
         "appliance pathology job cancel 20261202T070950-34fe850d3ceb"),
    ),
    "pathology job submit": (
        "Send slides (paths the servers can read, inside pathology.slide_roots, or this "
        "login's own folders in pathology.slide_roots_by_login) as one job; "
        "prints the job id, and with --wait follows it to its end (saying when the server "
        "running it goes away: it waits on for that server or another), naming each slide "
        "that failed and why. Exit 0: sent (with --wait: every slide scored); 1: with --wait, a "
        "slide or the job failed or it was cancelled, or the broker was unreachable; 2: a bad "
        "option (--um-per-px outside 0.1-4 µm/px, NaN, inf; a request over "
        "pathology.max_job_bytes) or config, or the broker refused "
        "the login or subscription (credentials, ACL) or --password-file (a file its group or "
        "everyone may read, an empty first line), nothing sent; 3: no final state within "
        "--timeout. The login is mqtt.username, its password the first line of --password-file "
        "(a file its owner alone may read), else $APPLIANCE_MQTT_PASSWORD's.",
        ("appliance pathology job submit /srv/slides/a.jpg /srv/slides/b.jpg --um-per-px 0.5",
         "appliance pathology job submit /srv/slides/*.jpg --um-per-px 1 --wait"),
    ),
    "pathology job list": (
        "Every job's retained state (queued, running, done, failed, cancelled; an ended job's "
        "for pathology.final_state_keep_s, 7 days by default), the requests "
        "no server has taken yet, and which pathology servers are online. Exit 0: listed; 1: "
        "the broker was unreachable; 2: a bad "
        "config, or the broker refused the login or subscription (credentials, ACL), or "
        "--password-file was refused. The login and --password-file as for submit.",
        ("appliance pathology job list", "appliance pathology job list --config office.yaml",
         "appliance pathology job list --config office.yaml --password-file lab-user.password"),
    ),
    "pathology job cancel": (
        "Cancel a queued or running job: its server stops it and frees its waiting tiles; a "
        "job no server has taken yet is withdrawn. Exit 0: cancel requested or withdrawn; 1: "
        "the job is unknown or already ended (nothing sent), or "
        "the broker was unreachable; 2: a bad job id, config or --password-file, or the broker "
        "refused the login or subscription (credentials, ACL). The login and --password-file as "
        "for submit.",
        ("appliance pathology job cancel 20261202T070950-34fe850d3ceb",),
    ),
    "console": (
        "The back-office web console and its HTTP API (/api/v1, OpenAPI at /docs) on "
        "console.bind:console.port (127.0.0.1:8080 by default); every page needs a login (a "
        "user made with `console user add` first) and every API call a bearer token. Before "
        "it serves, it applies the erasure journal's lines the store lacks, as `appliance "
        "backoffice` does; a journal it cannot use stops it (exit 2).",
        ("appliance console user add alice --role operator", "appliance console",
         "appliance console --config backoffice.yaml"),
    ),
    "console user add": (
        "Add a console user with a role (viewer reads; operator also sees dead letters), or set "
        "an existing user's password and role. The password is stored as an argon2id hash. "
        "Setting it again ends the user's open sessions and revokes its API tokens.",
        ("appliance console user add alice --role operator",
         "appliance console user add bob --password-file /run/secrets/bob"),
    ),
    "console user list": (
        "Every console user with its role, when it was added, its open sessions and API "
        "tokens, and its state ('enabled', or 'disabled' since when).",
        ("appliance console user list",),
    ),
    "console user disable": (
        "Stop a console user at once and keep it: it cannot log in (answered as a wrong "
        "password is), its open sessions end and its API tokens stop working, in a running "
        "console too. The last enabled operator cannot be disabled. Exit 2 when refused.",
        ("appliance console user disable bob",),
    ),
    "console user enable": (
        "Let a disabled console user log in again; its API tokens work again (its sessions "
        "ended when it was disabled).",
        ("appliance console user enable bob",),
    ),
    "console user remove": (
        "Remove a console user: its open sessions end and its API tokens are revoked at once, "
        "in a running console too. The last enabled operator cannot be removed.",
        ("appliance console user remove bob",),
    ),
    "console user": (
        "Console users: add one with a role, set an existing user's password and role, list "
        "them, disable or enable one, remove one.",
        ("appliance console user add alice --role operator",
         "appliance console --config office.yaml user add bob --password-file /run/secrets/bob",
         "appliance console user disable bob", "appliance console user remove bob"),
    ),
    "console token create": (
        "Print a new bearer token for the HTTP API, acting as an existing, enabled user. Only "
        "its hash is stored: keep the printed token. It works for --days (90 by default, at "
        "most 365); an expired token is refused as an unknown one is. Its id (for list and "
        "revoke) and when it expires go to stderr.",
        ("appliance console token create alice",
         "appliance console token create alice --days 30 --label 'nightly export'",
         "curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:8080/api/v1/fleet"),
    ),
    "console token list": (
        "API tokens: the id each is revoked by (the start of its hash, not the token), its "
        "user, label, when it was made, when it expires ('expired ...'; 'no expiry': made "
        "before tokens expired) and when it was last used (written at most once a minute). "
        "A token expired 30 days ago is forgotten when a token is made, when the console "
        "starts, and by a running console at most once an hour.",
        ("appliance console token list", "appliance console token list --user alice"),
    ),
    "console token revoke": (
        "Revoke one API token by its id (console token list): the API refuses it at once. "
        "Exit 2 when no token has that id.",
        ("appliance console token revoke 82ced4c362dd3d71",),
    ),
    "console token": (
        "Bearer tokens for the console's HTTP API, each acting as an existing user: create, "
        "list, revoke.",
        ("appliance console token create alice", "appliance console token list"),
    ),
    "console reference": (
        "Write the age-band reference ranges (n, mean and SD per feature) that kiosk screens "
        "compare a customer with (config screen.reference_file). An existing --out file is "
        "kept unless --force.",
        ("appliance console reference --out ranges.json",
         "appliance console reference --out ranges.json --force"),
    ),
}
