"""Stand-in for `google.colab.drive`: "mounts" the simulation's persistent Drive folder.

On Colab, `drive.mount("/content/drive")` puts the user's files under `/content/drive/MyDrive`, and that is
the only place that outlives the runtime. Here `<mountpoint>/MyDrive` becomes a symlink to the folder named
by $REWARD_LAB_SIM_DRIVE, the one folder the simulation keeps from one notebook's runtime to the next.
A mount point outside the simulated /content ($REWARD_LAB_CONTENT) is refused: a hard-coded `/content`
would write into this machine's real /content instead of the simulated one.
"""

import os


def mount(mountpoint, force_remount=False, timeout_ms=120000, readonly=False):
    drive, content = os.environ.get("REWARD_LAB_SIM_DRIVE"), os.environ.get("REWARD_LAB_CONTENT")
    if not drive or not content:
        raise RuntimeError("Colab simulation: REWARD_LAB_SIM_DRIVE and REWARD_LAB_CONTENT must be set")
    mountpoint = os.path.abspath(os.path.expanduser(str(mountpoint)))
    content = os.path.realpath(content)
    if os.path.commonpath([os.path.realpath(mountpoint), content]) != content:
        raise ValueError(f"Colab simulation: mount point {mountpoint} is outside the simulated /content "
                         f"($REWARD_LAB_CONTENT={content}); derive it from $REWARD_LAB_CONTENT, not a fixed /content")
    my_drive = os.path.join(mountpoint, "MyDrive")
    if os.path.islink(my_drive):
        if not force_remount:
            print(f"Drive already mounted at {mountpoint}; to attempt to forcibly remount, "
                  f'call drive.mount("{mountpoint}", force_remount=True).')
            return
        os.unlink(my_drive)
    if os.path.isdir(mountpoint) and os.listdir(mountpoint):
        raise ValueError("Mountpoint must not already contain files")
    os.makedirs(mountpoint, exist_ok=True)
    os.symlink(drive, my_drive, target_is_directory=True)
    print(f"Mounted at {mountpoint}")


def flush_and_unmount(timeout_ms=86400000):
    """Colab writes Drive back here; the simulation's Drive is a local folder, so there is nothing to flush."""
