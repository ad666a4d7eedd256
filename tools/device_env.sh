# Sourced at the start of a command on the GPU machine (the `device` tool): that machine has CUDA,
# CMake and PyTorch but none of our Debian -dev packages, so the .deb files carried in DEBS_DIR
# (default: .debs in the current directory or above) are unpacked into /tmp/prefix and the
# compiler, pkg-config and the loader are pointed there. Then:
#   cmake -S . -B build-dev $BITTTT_DEVICE_CMAKE_ARGS -DBITTTT_CUDA=ON && cmake --build build-dev -j16
# Fetch the packages once, here: (mkdir -p .debs && cd .debs && apt-get download libcli11-dev
#   libfmt-dev libfmt9 libgmock-dev libgtest-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0
#   libpcre2-posix3 libpcre2-dev libpkgconf3 libxxhash-dev libxxhash0 nlohmann-json3-dev
#   pkg-config pkgconf-bin pkgconf zlib1g-dev zlib1g)
if [ -z "${DEBS_DIR:-}" ]; then
    for d in .debs ../.debs ../../.debs; do [ -d "$d" ] && DEBS_DIR=$(cd "$d" && pwd) && break; done
fi
if [ ! -d "${DEBS_DIR:-}" ]; then
    echo "device_env: no .debs folder found (set DEBS_DIR)" >&2
    return 1 2>/dev/null || exit 1
fi
if [ ! -f /tmp/prefix/.done ]; then
    for f in "$DEBS_DIR"/*.deb; do dpkg -x "$f" /tmp/prefix; done
    touch /tmp/prefix/.done
fi
# Absolute links of the packages (zlib1g-dev's libz.so -> /lib/x86_64-linux-gnu/libz.so.1.2.13)
# dangle outside the prefix; CMake then takes libz.a, whose objects are not position-independent,
# and the Python extension (a shared object) fails to link. Point them into the prefix.
find /tmp/prefix -type l -lname '/*' | while read -r link; do
    target=$(readlink "$link")
    if [ -e "/tmp/prefix$target" ]; then ln -sfn "/tmp/prefix$target" "$link"; fi
done
export LD_LIBRARY_PATH=/tmp/prefix/usr/lib/x86_64-linux-gnu:/tmp/prefix/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
export PKG_CONFIG_LIBDIR=/tmp/prefix/usr/lib/x86_64-linux-gnu/pkgconfig:/tmp/prefix/usr/share/pkgconfig
export PKG_CONFIG_SYSROOT_DIR=/tmp/prefix
export PATH=/tmp/prefix/usr/bin:$PATH
export BITTTT_DEVICE_CMAKE_ARGS="-DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=/tmp/prefix/usr"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
