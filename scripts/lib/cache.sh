# Sourced: $CACHE, where what a run builds for Docker is kept outside the
# clone (the engine's images and volumes, the debootstrap root of the local
# stand-in images, the compose and buildx plugins), so that a fresh clone
# finds it and only a machine with nothing on it pays the first build.
# DAPR_WASM_CACHE moves it.
CACHE=${DAPR_WASM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dapr-wasm-stack}
