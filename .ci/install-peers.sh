# Sourced by .ci/run: installs the third-party peers the interop tests drive.
# Idempotent, so developers can source it too.
export DEBIAN_FRONTEND=noninteractive
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
if ! command -v wapbox >/dev/null 2>&1 && ! [ -x /usr/sbin/wapbox ]; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq kannel >/dev/null
fi
# xmllint for the MM7 schema proof (protocols/tests/mm7_schema) once the 3GPP XSD is in the tree.
if ! command -v xmllint >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq libxml2-utils >/dev/null
fi
# mount/umount for the disk-full test (tests/disk_full.rs mounts a small tmpfs as root).
if ! command -v mount >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq mount >/dev/null
fi
# strace for the slow-fsync test (tests/slow_fsync.rs delays the gateway's fsync calls with its fault injection).
if ! command -v strace >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq strace >/dev/null
fi
python3 -c 'import smpplib' 2>/dev/null || python3 -m pip install -q smpplib==2.2.4 || python3 -m pip install -q --break-system-packages smpplib==2.2.4
# The web console's browser tests: Debian's chromium, driven by playwright-core (no browser download).
# A CJK font so the Chinese console renders in its screenshots.
if ! [ -x /usr/bin/chromium ] || ! fc-list :lang=zh | grep -q .; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null
fi
if [ ! -d tests/peers/node/node_modules/smpp ] || [ ! -d tests/peers/node/node_modules/playwright-core ]; then
  (cd tests/peers/node && npm ci --silent --no-audit --no-fund)
fi
# cargo-deny for `.ci/run`'s supply-chain check (0.20.2 builds with rustc 1.95; ~4 min once).
if ! cargo deny --version 2>/dev/null | grep -q "^cargo-deny 0.20.2"; then
  cargo install --locked cargo-deny@0.20.2
fi
export SLUICE_INTEROP=1
