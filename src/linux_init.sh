#!/bin/busybox sh
# /init of the initramfs the runner builds for a Linux guest (src/linux.rs): Debian's
# busybox-static as userland. It prints values computed at run time, which tests/linux.rs
# checks, then powers off (ACPI S5), which ends the guest with status 0.
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "linux: init running on $(uname -s) $(uname -r) (@RELEASE@)"
# The hypervisor's CPUID leaves through /dev/cpu/0/cpuid: the file offset is the leaf and
# each 16 bytes read are EAX, EBX, ECX, EDX of the next leaf; 64 bytes from 0x40000000 are
# leaves 0x40000000-0x40000003 (signature, depth, exit counts).
insmod /lib/modules/cpuid.ko
dd if=/dev/cpu/0/cpuid of=/leaves bs=64 count=1 skip=$((0x40000000 / 64)) 2>/dev/null
signature=$(dd if=/leaves bs=1 skip=4 count=12 2>/dev/null | tr -d '\000')
depth=$(od -An -tu4 -j16 -N4 /leaves | tr -d ' ')
grep -q '^flags.* hypervisor' /proc/cpuinfo && flag=yes || flag=no
echo "linux: hypervisor=$signature depth=$depth cpuinfo-flag=$flag"
# Taint bit 9 (W): the kernel printed a WARN during boot (shown only with loglevel=8).
echo "linux: warned=$(( ($(cat /proc/sys/kernel/tainted) >> 9) & 1 ))"
echo "linux: cpus=$(grep -c ^processor /proc/cpuinfo) memory=$(grep MemTotal /proc/meminfo | tr -s ' ')"
echo "linux: clocksource=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
echo "linux: workload seq-1-20000-md5=$(seq 1 20000 | md5sum | cut -d' ' -f1)"
# The RTC's interrupt (IRQ 8): an alarm a second ahead through rtc_cmos, then its count.
if [ -w /sys/class/rtc/rtc0/wakealarm ]; then
    echo +1 > /sys/class/rtc/rtc0/wakealarm
    sleep 2
fi
echo "linux: rtc-irq8=$(grep ' rtc0$' /proc/interrupts | tr -s ' ' | cut -d' ' -f3,5,6)"
# virtio-mmio devices the hypervisor announces in its ACPI tables (_HID LNRO0005): load the
# virtio modules, print the CRC-32 of the whole virtio-blk disk (tests/linux_io.rs compares
# it with the data the runner wrote), bring up the virtio-net at 10.0.2.16 and answer one UDP
# request on port 7777 with that CRC (/bin/udp-answer).
if ls /sys/bus/acpi/devices 2>/dev/null | grep -q '^LNRO0005'; then
    mkdir -p /tmp
    for m in virtio_ring virtio virtio_mmio virtio_blk failover net_failover virtio_net; do
        insmod /lib/modules/$m.ko || echo "linux: io insmod $m failed"
    done
    for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 1; done
    if [ -b /dev/vda ]; then
        crc32 < /dev/vda > /tmp/answer
        echo "linux: io vda-sectors=$(cat /sys/block/vda/size) vda-crc32=$(cat /tmp/answer)"
    else
        echo "linux: io no virtio-blk disk" > /tmp/answer
        cat /tmp/answer
    fi
    if ip link set eth0 up 2>/dev/null; then
        ip addr add 10.0.2.16/24 dev eth0
        ip route add default via 10.0.2.2
        echo "linux: io eth0 mac=$(cat /sys/class/net/eth0/address)"
        ping -c 1 -W 2 10.0.2.2 > /dev/null 2>&1
        echo "linux: io waiting for a udp request on 10.0.2.16:7777"
        udp-answer /tmp/answer && echo "linux: io udp answered" || echo "linux: io udp failed"
    else
        echo "linux: io no virtio-net interface"
    fi
fi
# An e1000 the level below assigned to this guest (PCI 8086:100e, `assign = ["e1000"]`): load
# Linux's e1000 driver, which receives only through the device's interrupt (its INTx, which
# the level below forwards), bring eth0 up at 10.0.2.15 and answer one UDP request on port
# 7777 (tests/assign.rs), then print how many interrupts the e1000 raised.
e1000=
for d in /sys/bus/pci/devices/*; do
    [ "$(cat $d/vendor 2>/dev/null)" = 0x8086 ] && [ "$(cat $d/device 2>/dev/null)" = 0x100e ] && e1000=$d
done
if [ -n "$e1000" ]; then
    mkdir -p /tmp
    echo "e1000 assigned" > /tmp/answer
    insmod /lib/modules/e1000.ko || echo "linux: assign insmod e1000 failed"
    if ip link set eth0 up 2>/dev/null; then
        ip addr add 10.0.2.15/24 dev eth0
        ip route add default via 10.0.2.2
        echo "linux: assign eth0 mac=$(cat /sys/class/net/eth0/address) irq=$(cat $e1000/irq)"
        ping -c 1 -W 2 10.0.2.2 > /dev/null 2>&1
        echo "linux: assign waiting for a udp request on 10.0.2.15:7777"
        udp-answer /tmp/answer && echo "linux: assign udp answered" || echo "linux: assign udp failed"
        echo "linux: assign e1000 interrupts=$(grep eth0 /proc/interrupts | tr -s ' ' | cut -d' ' -f3)"
        grep eth0 /proc/interrupts
    else
        echo "linux: assign no e1000 interface"
    fi
fi
# `turtles.bench=1` on the command line: the Linux bench's parts (`cargo run -- bench linux`).
grep -q 'turtles.bench=1' /proc/cmdline && . /bench/bench.sh
echo "linux: uptime=$(cut -d' ' -f1 /proc/uptime)s; powering off"
poweroff -f
