#!/bin/busybox sh
# /init of the KVM initramfs (src/linux_kvm.rs): Debian's Linux as a KVM host. It loads KVM
# (irqbypass, kvm, kvm-intel with nested=1, plus every kvm_intel.NAME=VALUE word of the kernel
# command line, e.g. kvm_intel.enable_shadow_vmcs=0), runs the turtles launcher on /dev/kvm
# with the images packed in /turtles, prints the launcher's status as the run's exit marker
# and powers off (ACPI S5).
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "linux: init running on $(uname -s) $(uname -r) (@RELEASE@), KVM host"
params="nested=1"
for word in $(cat /proc/cmdline); do
  case "$word" in kvm_intel.*=*) params="$params ${word#kvm_intel.}" ;; esac
done
status=0
insmod /lib/modules/irqbypass.ko && insmod /lib/modules/kvm.ko &&
  insmod /lib/modules/kvm-intel.ko $params || status=2
if [ $status -ne 0 ] || [ ! -c /dev/kvm ]; then
  echo "kvm: KVM did not load (kvm-intel $params); the kernel said:"
  dmesg | grep -i -E 'kvm|vmx' | tail -n 8 | sed 's/^/kvm: | /'
  status=2
else
  p=/sys/module/kvm_intel/parameters
  echo "kvm: loaded: kvm-intel $params; nested=$(cat $p/nested) ept=$(cat $p/ept)" \
    "vpid=$(cat $p/vpid) unrestricted_guest=$(cat $p/unrestricted_guest)" \
    "enable_shadow_vmcs=$(cat $p/enable_shadow_vmcs) flexpriority=$(cat $p/flexpriority)"
  # debugfs: the launcher prints KVM's exit counters for its VM at the end (kvm: stats:).
  mount -t debugfs debugfs /sys/kernel/debug
  echo "kvm: launching: turtles-launcher @ARGS@"
  /bin/turtles-launcher @ARGS@
  status=$?
fi
echo "kvm: launcher exited with status $status"
echo "turtles: exit status=$status"
# Let the serial driver drain its buffer: poweroff -f does not wait for the tty.
sleep 2
# As a guest of a hypervisor (KVM as L1 on turtles' L0, l0-kvm-leaf), a failure is also
# written to the exit port 0xf4, so that it becomes the run's status (a power-off is 0).
if [ $status -ne 0 ] && grep -q '^flags.* hypervisor' /proc/cpuinfo; then
  printf "\\$(printf %03o $((status & 255)))" | dd of=/dev/port bs=1 seek=244 count=1 2>/dev/null
fi
poweroff -f
