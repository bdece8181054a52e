#!/usr/bin/env bash
# The font catalogue's installer (synth/data/korean_fonts.yaml), one for every setup: scripts/bootstrap.sh and both
# Docker images call it, so a machine and an image render with the same pool.
#   scripts/fonts.sh apt            Debian packages: the base five and the libraries trdg needs, then the rest of the
#                                   catalogue's packages unless HWOCR_FONTS=base
#   scripts/fonts.sh npm [PYTHON]   the catalogue's npm fonts (python -m synth.npm_fonts with PYTHON, default
#                                   python3, where hwocr is installed) unless HWOCR_FONTS=base
# A catalogue package or npm font that cannot be fetched is skipped with a warning; a pool that asks for its fonts
# then fails naming the file, so the pool never changes silently.
set -euo pipefail

BASE_PACKAGES=(fonts-dejavu-core fonts-nanum fonts-nanum-extra fonts-unfonts-core fonts-unfonts-extra fonts-alee
               libgl1 libglib2.0-0)
# About 350 MB installed: fonts-lxgw-wenkai (98 MB), fonts-noto-cjk (91 MB) and fonts-nanum-eco (57 MB) the largest.
CATALOGUE_PACKAGES=(fonts-woowa-bm fonts-baekmuk fonts-lexi-gulim fonts-lexi-saebom fonts-naver-d2coding
                    fonts-noto-cjk fonts-wqy-microhei fonts-wqy-zenhei fonts-unifont fonts-lxgw-wenkai
                    fonts-droid-fallback fonts-nanum-eco)
[ "${HWOCR_FONTS:-all}" = base ] && CATALOGUE_PACKAGES=()

SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"

not_installed() {  # PACKAGE...: those dpkg does not have
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || echo "$p"
  done
}

apt_install() { DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }

install_apt() {
  local missing missing_fonts p
  mapfile -t missing < <(not_installed "${BASE_PACKAGES[@]}")
  mapfile -t missing_fonts < <(not_installed "${CATALOGUE_PACKAGES[@]}")
  ((${#missing[@]} + ${#missing_fonts[@]})) || return 0
  $SUDO apt-get update -qq
  if ((${#missing[@]})); then
    echo "fonts: installing ${missing[*]}"
    apt_install "${missing[@]}"
  fi
  if ((${#missing_fonts[@]})); then
    echo "fonts: installing ${missing_fonts[*]}"
    if ! apt_install "${missing_fonts[@]}" 2>/dev/null; then
      for p in "${missing_fonts[@]}"; do
        apt_install "$p" 2>/dev/null || echo "fonts: warning: font package $p could not be installed; skipped" >&2
      done
    fi
  fi
}

case "${1:-}" in
  apt) install_apt ;;
  npm)
    [ "${HWOCR_FONTS:-all}" = base ] && exit 0
    # pinned versions, each file checked by sha256, into $HWOCR_NPM_FONTS (default ~/.cache/hwocr/fonts/npm)
    "${2:-python3}" -m synth.npm_fonts ;;
  *) echo "usage: scripts/fonts.sh apt | npm [PYTHON]" >&2; exit 2 ;;
esac
