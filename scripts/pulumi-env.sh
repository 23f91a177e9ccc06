# shellcheck shell=bash
# Source before calling pulumi with the engine that scripts/engine.sh built:
#   . scripts/pulumi-env.sh "$(bash scripts/engine.sh)"
# (or set PULUMI_ENGINE_DIR instead of passing the directory).
# Exports PATH (engine dir first), PULUMI_SKIP_UPDATE_CHECK=true and
# PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true, so the CLI never tries to
# reach the internet for updates or plugins, and registers the command
# provider in $PULUMI_HOME (default ~/.pulumi) when it is built and missing.
# Plugin lookup (sdk/go/common/workspace/plugins.go): a pulumi-resource-* on
# PATH would be used whatever its version, with a "using ... from $PATH"
# warning on every run, and `pulumi plugin ls` would not list it; so the
# provider is installed with `pulumi plugin install ... --file` (no download)
# and PULUMI_IGNORE_AMBIENT_PLUGINS=true makes that pinned copy the one used.
# Language hosts and pulumi-resource-pulumi-nodejs are "bundled" plugins,
# found next to the pulumi binary either way.
# The caller still chooses the backend (`pulumi login file://...`) and sets
# PULUMI_CONFIG_PASSPHRASE, PULUMI_HOME if wanted, and puts a node >= 22
# (e.g. node_modules/.bin) first on PATH: the language host runs the first
# `node` on PATH.
# Returns non-zero (never exits the caller) when the directory has no pulumi.

pulumi_env_dir=${1:-${PULUMI_ENGINE_DIR:-}}
if [ -z "$pulumi_env_dir" ] || [ ! -x "$pulumi_env_dir/pulumi" ]; then
  echo "pulumi-env.sh: no pulumi binary in '${pulumi_env_dir}'" >&2
  unset pulumi_env_dir
  return 1
fi
export PULUMI_ENGINE_DIR=$pulumi_env_dir
case ":$PATH:" in
  *":$pulumi_env_dir:"*) ;;
  *) export PATH="$pulumi_env_dir:$PATH" ;;
esac
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
export PULUMI_IGNORE_AMBIENT_PLUGINS=true

# shellcheck disable=SC1091 # scripts/engine/versions.env
. "$(dirname "${BASH_SOURCE[0]}")/engine/versions.env"
if [ -x "$pulumi_env_dir/pulumi-resource-command" ] &&
   ! pulumi plugin ls 2>/dev/null | grep -Eq "^command +resource +$PULUMI_ENGINE_COMMAND_VERSION "; then
  pulumi plugin install resource command "$PULUMI_ENGINE_COMMAND_VERSION" \
    --file "$pulumi_env_dir/pulumi-resource-command" >&2 || {
    echo "pulumi-env.sh: could not install the command plugin" >&2
    unset pulumi_env_dir
    return 1
  }
fi
unset pulumi_env_dir
