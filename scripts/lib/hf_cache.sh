# Sourced by the setup scripts: hf_hub_cache prints the Hugging Face hub cache folder
# the way tdeploy resolves it (src/hf/hub_cache.c): $HF_HUB_CACHE, else $HF_HOME/hub,
# else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub, with a leading
# "~" expanded as huggingface_hub does.
hf_expand_home() {
  case "$1" in
    "~") printf '%s' "$HOME" ;;
    "~/"*) printf '%s/%s' "$HOME" "${1#\~/}" ;;
    *) printf '%s' "$1" ;;
  esac
}
hf_hub_cache() {
  if [ -n "${HF_HUB_CACHE:-}" ]; then hf_expand_home "$HF_HUB_CACHE"
  elif [ -n "${HF_HOME:-}" ]; then printf '%s/hub' "$(hf_expand_home "$HF_HOME")"
  elif [ -n "${XDG_CACHE_HOME:-}" ]; then printf '%s/huggingface/hub' "$(hf_expand_home "$XDG_CACHE_HOME")"
  else printf '%s/.cache/huggingface/hub' "$HOME"
  fi
}
