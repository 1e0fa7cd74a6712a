# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_vfio_migrate_global_optspecs
    string join \n o/output= q/quiet state-dir= report-html= report-svg= notify= notify-secret-env= h/help V/version
end

function __fish_vfio_migrate_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_vfio_migrate_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_vfio_migrate_using_subcommand
    set -l cmd (__fish_vfio_migrate_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c vfio-migrate -n "__fish_vfio_migrate_needs_command" -s o -l output -d 'How results are written to stdout' -r -f -a "human\t'Progress bars on a terminal (stderr), a readable report on stdout'
json\t'One JSON report object on stdout; nothing else on stdout'
ndjson\t'One JSON object per line: events as they happen, then the report'"
complete -c vfio-migrate -n "__fish_vfio_migrate_needs_command" -l state-dir -d 'Where locks and journals live (default: $VFIO_MIGRATE_STATE_DIR, else /var/lib/vfio-migrate for root, else $XDG_STATE_HOME/vfio-migrate)' -r -F
complete -c vfio-migrate -n "__fish_vfio_migrate_needs_command" -l report-html -d 'Also draw the report as one self-contained HTML page (a chart over time with device lanes, the numbers, the policy\'s actions and the plan\'s limits) into FILE' -r -F
complete -c vfio-migrate -n "__fish_vfio_migrate_needs_command" -l report-svg -d 'Also draw the report\'s chart alone as an SVG file, for embedding' -r -F
complete -c vfio-migrate -n "__fish_vfio_migrate_needs_command" -l notify -d 'Also POST the run\'s events as JSON to URL (http:// or https://; repeatable), with the plan\'s `[notify]` settings or their defaults' -r
complete -c vfio-migrate -n "__fish_vfio_migrate_needs_command" -l notify-secret-env -d 'Sign the webhooks with the key in the environment variable NAME (HMAC-SHA256), instead of the one the plan\'s `notify.secret_env` names' -r
complete -c vfio-migrate -n "__fish_vfio_migrate_needs_command" -s q -l quiet -d 'No progress display, only the result'
complete -c vfio-migrate -n "__fish_vfio_migrate_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vfio-migrate -n "__fish_vfio_migrate_needs_command" -s V -l version -d 'Print version'
complete -c vfio-migrate -n "__fish_vfio_migrate_needs_command" -a "migrate" -d 'Migrate the VM as the plan says'
complete -c vfio-migrate -n "__fish_vfio_migrate_needs_command" -a "run" -d 'Migrate several VMs in one run, as when a host is emptied: at most --parallel migrations at once, sharing --bandwidth-budget; each plan keeps its own limits, policy and device gate. One report with every VM\'s; the exit code is the worst of the VMs\' (4 over 3 over 1 over 0), 130 when interrupted'
complete -c vfio-migrate -n "__fish_vfio_migrate_needs_command" -a "recover" -d 'Look at both sides of a plan and repair what a run that died left behind: cancel a migration nobody drives, put back changed settings, resume a paused source unless the destination runs the VM (exit 0 settled, 4 a person must decide)'
complete -c vfio-migrate -n "__fish_vfio_migrate_needs_command" -a "check" -d 'Check, changing nothing, whether the plan will work and what it will cost: both monitors, the plan\'s devices on this host\'s kernel, and a prediction from one dirty-rate measurement (exit 0 ready, 3 not ready, 2 invalid plan). With --host, whether this host can send or receive VFIO migrations at all'
complete -c vfio-migrate -n "__fish_vfio_migrate_needs_command" -a "validate" -d 'Check a plan without contacting any host (exit 0 valid, 2 invalid)'
complete -c vfio-migrate -n "__fish_vfio_migrate_needs_command" -a "schema" -d 'Print the plan\'s JSON Schema'
complete -c vfio-migrate -n "__fish_vfio_migrate_needs_command" -a "demo" -d 'Start two local QEMUs with a bundled dirtying guest and migrate it between them (with --libvirt: as a libvirt domain between two private libvirt daemons)'
complete -c vfio-migrate -n "__fish_vfio_migrate_needs_command" -a "report" -d 'Draw a saved JSON report (as `--output json` writes it, or the last line of `--output ndjson`) as an HTML page and/or an SVG chart'
complete -c vfio-migrate -n "__fish_vfio_migrate_needs_command" -a "guard" -d 'Watch a run and repair if it dies (started by each run; not for people)'
complete -c vfio-migrate -n "__fish_vfio_migrate_needs_command" -a "completions" -d 'Print shell completions'
complete -c vfio-migrate -n "__fish_vfio_migrate_needs_command" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand migrate" -l report-html -d 'Also draw the report as one self-contained HTML page (a chart over time with device lanes, the numbers, the policy\'s actions and the plan\'s limits) into FILE' -r -F
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand migrate" -l report-svg -d 'Also draw the report\'s chart alone as an SVG file, for embedding' -r -F
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand migrate" -s o -l output -d 'How results are written to stdout' -r -f -a "human\t'Progress bars on a terminal (stderr), a readable report on stdout'
json\t'One JSON report object on stdout; nothing else on stdout'
ndjson\t'One JSON object per line: events as they happen, then the report'"
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand migrate" -l state-dir -d 'Where locks and journals live (default: $VFIO_MIGRATE_STATE_DIR, else /var/lib/vfio-migrate for root, else $XDG_STATE_HOME/vfio-migrate)' -r -F
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand migrate" -l notify -d 'Also POST the run\'s events as JSON to URL (http:// or https://; repeatable), with the plan\'s `[notify]` settings or their defaults' -r
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand migrate" -l notify-secret-env -d 'Sign the webhooks with the key in the environment variable NAME (HMAC-SHA256), instead of the one the plan\'s `notify.secret_env` names' -r
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand migrate" -s q -l quiet -d 'No progress display, only the result'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand migrate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand run" -l parallel -d 'How many migrations run at once' -r
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand run" -l bandwidth-budget -d 'The bandwidth all running migrations share (e.g. `1GiB/s`, `800MiB/s`): divided equally among them (a plan\'s lower `max_bandwidth` kept), and divided again as they start and finish. Without it each plan\'s own cap holds' -r
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand run" -l order -d 'In which order the VMs start' -r -f -a "plan\t'As the plans were given'
shortest-first\t'Shortest predicted migration first (check\'s prediction from one dirty-rate measurement per VM; the guest\'s RAM size when there is none)'"
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand run" -s o -l output -d 'How results are written to stdout' -r -f -a "human\t'Progress bars on a terminal (stderr), a readable report on stdout'
json\t'One JSON report object on stdout; nothing else on stdout'
ndjson\t'One JSON object per line: events as they happen, then the report'"
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand run" -l state-dir -d 'Where locks and journals live (default: $VFIO_MIGRATE_STATE_DIR, else /var/lib/vfio-migrate for root, else $XDG_STATE_HOME/vfio-migrate)' -r -F
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand run" -l notify -d 'Also POST the run\'s events as JSON to URL (http:// or https://; repeatable), with the plan\'s `[notify]` settings or their defaults' -r
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand run" -l notify-secret-env -d 'Sign the webhooks with the key in the environment variable NAME (HMAC-SHA256), instead of the one the plan\'s `notify.secret_env` names' -r
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand run" -l fail-fast -d 'Start no new migration after one did not migrate; the running ones finish or abort by their own policies'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand run" -s q -l quiet -d 'No progress display, only the result'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand recover" -s o -l output -d 'How results are written to stdout' -r -f -a "human\t'Progress bars on a terminal (stderr), a readable report on stdout'
json\t'One JSON report object on stdout; nothing else on stdout'
ndjson\t'One JSON object per line: events as they happen, then the report'"
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand recover" -l state-dir -d 'Where locks and journals live (default: $VFIO_MIGRATE_STATE_DIR, else /var/lib/vfio-migrate for root, else $XDG_STATE_HOME/vfio-migrate)' -r -F
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand recover" -l notify -d 'Also POST the run\'s events as JSON to URL (http:// or https://; repeatable), with the plan\'s `[notify]` settings or their defaults' -r
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand recover" -l notify-secret-env -d 'Sign the webhooks with the key in the environment variable NAME (HMAC-SHA256), instead of the one the plan\'s `notify.secret_env` names' -r
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand recover" -s q -l quiet -d 'No progress display, only the result'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand recover" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand check" -l side -d 'Only this host\'s own checks of the plan\'s devices for one side, contacting no monitor but that side\'s own: run it on each host and combine the JSON' -r -f -a "source\t'The host the VM runs on now'
destination\t'The host it moves to'"
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand check" -l sysfs-root -d 'Read /sys and /dev under this directory instead of / (fixture trees)' -r -F
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand check" -s o -l output -d 'How results are written to stdout' -r -f -a "human\t'Progress bars on a terminal (stderr), a readable report on stdout'
json\t'One JSON report object on stdout; nothing else on stdout'
ndjson\t'One JSON object per line: events as they happen, then the report'"
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand check" -l state-dir -d 'Where locks and journals live (default: $VFIO_MIGRATE_STATE_DIR, else /var/lib/vfio-migrate for root, else $XDG_STATE_HOME/vfio-migrate)' -r -F
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand check" -l notify -d 'Also POST the run\'s events as JSON to URL (http:// or https://; repeatable), with the plan\'s `[notify]` settings or their defaults' -r
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand check" -l notify-secret-env -d 'Sign the webhooks with the key in the environment variable NAME (HMAC-SHA256), instead of the one the plan\'s `notify.secret_env` names' -r
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand check" -l host -d 'Check this host alone, without a plan'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand check" -l no-measure -d 'Take no dirty-rate measurement, so make no prediction'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand check" -s q -l quiet -d 'No progress display, only the result'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand validate" -s o -l output -d 'How results are written to stdout' -r -f -a "human\t'Progress bars on a terminal (stderr), a readable report on stdout'
json\t'One JSON report object on stdout; nothing else on stdout'
ndjson\t'One JSON object per line: events as they happen, then the report'"
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand validate" -l state-dir -d 'Where locks and journals live (default: $VFIO_MIGRATE_STATE_DIR, else /var/lib/vfio-migrate for root, else $XDG_STATE_HOME/vfio-migrate)' -r -F
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand validate" -l notify -d 'Also POST the run\'s events as JSON to URL (http:// or https://; repeatable), with the plan\'s `[notify]` settings or their defaults' -r
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand validate" -l notify-secret-env -d 'Sign the webhooks with the key in the environment variable NAME (HMAC-SHA256), instead of the one the plan\'s `notify.secret_env` names' -r
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand validate" -s q -l quiet -d 'No progress display, only the result'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand validate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand schema" -s o -l output -d 'How results are written to stdout' -r -f -a "human\t'Progress bars on a terminal (stderr), a readable report on stdout'
json\t'One JSON report object on stdout; nothing else on stdout'
ndjson\t'One JSON object per line: events as they happen, then the report'"
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand schema" -l state-dir -d 'Where locks and journals live (default: $VFIO_MIGRATE_STATE_DIR, else /var/lib/vfio-migrate for root, else $XDG_STATE_HOME/vfio-migrate)' -r -F
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand schema" -l notify -d 'Also POST the run\'s events as JSON to URL (http:// or https://; repeatable), with the plan\'s `[notify]` settings or their defaults' -r
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand schema" -l notify-secret-env -d 'Sign the webhooks with the key in the environment variable NAME (HMAC-SHA256), instead of the one the plan\'s `notify.secret_env` names' -r
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand schema" -s q -l quiet -d 'No progress display, only the result'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand schema" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand demo" -l scenario -d 'What the guest does and how the bundled plan reacts' -r -f -a "converge\t'256 MiB working set dirtied at 50 MiB/s over a 128 MiB/s link: converges'
abort\t'256 MiB at 200 MiB/s over 128 MiB/s: never converges; the policy aborts'
force\t'The same stalled workload; the policy raises the downtime limit to finish'
throttle\t'The same stalled workload; a vCPU dirty limit makes it converge'"
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand demo" -l keep -d 'Write the generated plan into this directory instead of the temporary one' -r -F
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand demo" -l report-html -d 'Also draw the report as one self-contained HTML page (a chart over time with device lanes, the numbers, the policy\'s actions and the plan\'s limits) into FILE' -r -F
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand demo" -l report-svg -d 'Also draw the report\'s chart alone as an SVG file, for embedding' -r -F
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand demo" -s o -l output -d 'How results are written to stdout' -r -f -a "human\t'Progress bars on a terminal (stderr), a readable report on stdout'
json\t'One JSON report object on stdout; nothing else on stdout'
ndjson\t'One JSON object per line: events as they happen, then the report'"
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand demo" -l state-dir -d 'Where locks and journals live (default: $VFIO_MIGRATE_STATE_DIR, else /var/lib/vfio-migrate for root, else $XDG_STATE_HOME/vfio-migrate)' -r -F
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand demo" -l notify -d 'Also POST the run\'s events as JSON to URL (http:// or https://; repeatable), with the plan\'s `[notify]` settings or their defaults' -r
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand demo" -l notify-secret-env -d 'Sign the webhooks with the key in the environment variable NAME (HMAC-SHA256), instead of the one the plan\'s `notify.secret_env` names' -r
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand demo" -l no-devices -d 'Migrate without the two modelled VFIO devices'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand demo" -l sim -d 'Use the built-in simulated hypervisor pair instead of starting QEMU (chosen automatically when qemu-system-x86_64 is not installed)'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand demo" -l libvirt -d 'Run the guest as a libvirt domain under two private libvirt daemons on this machine and migrate it through libvirt instead of QMP; the modelled devices sit behind libvirt\'s monitor (its emulator runs the device model\'s wrapper, vfio-model-qemu, built beside this binary). Needs root, libvirt and QEMU; without them it exits 3 (no fallback to QMP or the simulated pair)'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand demo" -s q -l quiet -d 'No progress display, only the result'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand demo" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand report" -l html -d 'Write the self-contained HTML page here' -r -F
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand report" -l svg -d 'Write the SVG chart here' -r -F
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand report" -s o -l output -d 'How results are written to stdout' -r -f -a "human\t'Progress bars on a terminal (stderr), a readable report on stdout'
json\t'One JSON report object on stdout; nothing else on stdout'
ndjson\t'One JSON object per line: events as they happen, then the report'"
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand report" -l state-dir -d 'Where locks and journals live (default: $VFIO_MIGRATE_STATE_DIR, else /var/lib/vfio-migrate for root, else $XDG_STATE_HOME/vfio-migrate)' -r -F
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand report" -l notify -d 'Also POST the run\'s events as JSON to URL (http:// or https://; repeatable), with the plan\'s `[notify]` settings or their defaults' -r
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand report" -l notify-secret-env -d 'Sign the webhooks with the key in the environment variable NAME (HMAC-SHA256), instead of the one the plan\'s `notify.secret_env` names' -r
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand report" -s q -l quiet -d 'No progress display, only the result'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand report" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand guard" -s o -l output -d 'How results are written to stdout' -r -f -a "human\t'Progress bars on a terminal (stderr), a readable report on stdout'
json\t'One JSON report object on stdout; nothing else on stdout'
ndjson\t'One JSON object per line: events as they happen, then the report'"
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand guard" -l state-dir -d 'Where locks and journals live (default: $VFIO_MIGRATE_STATE_DIR, else /var/lib/vfio-migrate for root, else $XDG_STATE_HOME/vfio-migrate)' -r -F
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand guard" -l notify -d 'Also POST the run\'s events as JSON to URL (http:// or https://; repeatable), with the plan\'s `[notify]` settings or their defaults' -r
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand guard" -l notify-secret-env -d 'Sign the webhooks with the key in the environment variable NAME (HMAC-SHA256), instead of the one the plan\'s `notify.secret_env` names' -r
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand guard" -s q -l quiet -d 'No progress display, only the result'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand guard" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand completions" -s o -l output -d 'How results are written to stdout' -r -f -a "human\t'Progress bars on a terminal (stderr), a readable report on stdout'
json\t'One JSON report object on stdout; nothing else on stdout'
ndjson\t'One JSON object per line: events as they happen, then the report'"
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand completions" -l state-dir -d 'Where locks and journals live (default: $VFIO_MIGRATE_STATE_DIR, else /var/lib/vfio-migrate for root, else $XDG_STATE_HOME/vfio-migrate)' -r -F
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand completions" -l notify -d 'Also POST the run\'s events as JSON to URL (http:// or https://; repeatable), with the plan\'s `[notify]` settings or their defaults' -r
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand completions" -l notify-secret-env -d 'Sign the webhooks with the key in the environment variable NAME (HMAC-SHA256), instead of the one the plan\'s `notify.secret_env` names' -r
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand completions" -s q -l quiet -d 'No progress display, only the result'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand completions" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand help; and not __fish_seen_subcommand_from migrate run recover check validate schema demo report guard completions help" -f -a "migrate" -d 'Migrate the VM as the plan says'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand help; and not __fish_seen_subcommand_from migrate run recover check validate schema demo report guard completions help" -f -a "run" -d 'Migrate several VMs in one run, as when a host is emptied: at most --parallel migrations at once, sharing --bandwidth-budget; each plan keeps its own limits, policy and device gate. One report with every VM\'s; the exit code is the worst of the VMs\' (4 over 3 over 1 over 0), 130 when interrupted'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand help; and not __fish_seen_subcommand_from migrate run recover check validate schema demo report guard completions help" -f -a "recover" -d 'Look at both sides of a plan and repair what a run that died left behind: cancel a migration nobody drives, put back changed settings, resume a paused source unless the destination runs the VM (exit 0 settled, 4 a person must decide)'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand help; and not __fish_seen_subcommand_from migrate run recover check validate schema demo report guard completions help" -f -a "check" -d 'Check, changing nothing, whether the plan will work and what it will cost: both monitors, the plan\'s devices on this host\'s kernel, and a prediction from one dirty-rate measurement (exit 0 ready, 3 not ready, 2 invalid plan). With --host, whether this host can send or receive VFIO migrations at all'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand help; and not __fish_seen_subcommand_from migrate run recover check validate schema demo report guard completions help" -f -a "validate" -d 'Check a plan without contacting any host (exit 0 valid, 2 invalid)'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand help; and not __fish_seen_subcommand_from migrate run recover check validate schema demo report guard completions help" -f -a "schema" -d 'Print the plan\'s JSON Schema'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand help; and not __fish_seen_subcommand_from migrate run recover check validate schema demo report guard completions help" -f -a "demo" -d 'Start two local QEMUs with a bundled dirtying guest and migrate it between them (with --libvirt: as a libvirt domain between two private libvirt daemons)'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand help; and not __fish_seen_subcommand_from migrate run recover check validate schema demo report guard completions help" -f -a "report" -d 'Draw a saved JSON report (as `--output json` writes it, or the last line of `--output ndjson`) as an HTML page and/or an SVG chart'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand help; and not __fish_seen_subcommand_from migrate run recover check validate schema demo report guard completions help" -f -a "guard" -d 'Watch a run and repair if it dies (started by each run; not for people)'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand help; and not __fish_seen_subcommand_from migrate run recover check validate schema demo report guard completions help" -f -a "completions" -d 'Print shell completions'
complete -c vfio-migrate -n "__fish_vfio_migrate_using_subcommand help; and not __fish_seen_subcommand_from migrate run recover check validate schema demo report guard completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
