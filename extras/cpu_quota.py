"""A container's CPU quota (Docker, Kubernetes, JupyterHub's cpu_limit), which os.cpu_count()
and PyTorch's default do not see: the scripts' default threads then follow it.

Usage: common.usable_cpus() uses within_quota when this file is here
"""
import math
import os


def within_quota(count, cgroup_root="/sys/fs/cgroup"):
    """count CPUs, or fewer if this process's cgroup has a CPU quota (2.5 CPUs count as 3)."""
    quota = cgroup_cpu_quota(cgroup_root)
    return max(1, min(count, math.ceil(quota))) if quota else count


def cgroup_cpu_quota(root):
    """The CPUs the cgroup quota allows this process (2.5 for 250 ms of each 100 ms), the least
    of its cgroup and the cgroups above it; None without a quota. cgroup v2 and v1."""
    quotas = []
    for line in read_text("/proc/self/cgroup").splitlines():  # "0::/path" (v2), "4:cpu:/path" (v1)
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            folders, name = [root, os.path.join(root, "unified")], "cpu.max"
        elif "cpu" in controllers.split(","):
            folders, name = [os.path.join(root, controllers), os.path.join(root, "cpu")], None
        else:
            continue
        for folder in folders:
            here = os.path.join(folder, path.lstrip("/"))
            while here.startswith(folder):  # this cgroup, then each one above it
                quotas.append(quota_in(here, name))
                here = os.path.dirname(here)
    quotas = [quota for quota in quotas if quota]
    return min(quotas) if quotas else None


def quota_in(folder, v2_name):
    """The CPU quota a cgroup folder sets, in CPUs, or None."""
    if v2_name:  # cpu.max: "max 100000" or "250000 100000"
        fields = read_text(os.path.join(folder, v2_name)).split()
        allowed, period = fields if len(fields) == 2 else ("max", "1")
    else:  # cpu.cfs_quota_us is -1 without a quota
        allowed = read_text(os.path.join(folder, "cpu.cfs_quota_us")).strip() or "-1"
        period = read_text(os.path.join(folder, "cpu.cfs_period_us")).strip() or "1"
    if allowed in ("max", "-1") or not (allowed.isdigit() and period.isdigit()) or int(period) == 0:
        return None
    return int(allowed) / int(period)


def read_text(path):
    """The file's text, or "" if it cannot be read (no such cgroup file on this system)."""
    try:
        with open(path) as file:
            return file.read()
    except OSError:
        return ""
