"""Loopback RTSP server for the streams tests (run with the system /usr/bin/python3, which has GStreamer).

Usage: /usr/bin/python3 rtsp_server.py PORT CLIP.mp4 [--video-only]
Serves rtsp://127.0.0.1:PORT/clip: the clip's H.264 video and AAC audio, paced in real time, over
TCP-interleaved or UDP RTP as the client asks. Every client session starts the clip from its beginning.
Prints "READY" on stdout once listening. Needs the Debian packages listed in tests/system-packages.txt.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    port, clip = sys.argv[1], sys.argv[2]
    video_only = "--video-only" in sys.argv
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    launch = (
        f'( filesrc location="{clip}" ! qtdemux name=d '
        "d.video_0 ! queue ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 "
    )
    if not video_only:
        launch += "d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97 "
    launch += ")"
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(False)
    server.get_mount_points().add_factory("/clip", factory)
    if server.attach(None) == 0:
        print("FAILED to bind", flush=True)
        sys.exit(1)
    print("READY", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
