#!/usr/bin/python3
"""A real RTSP server for tests and benchmarks: GStreamer's RTSP server (Debian's
``gstreamer1.0-rtsp``, ``gir1.2-gst-rtsp-server-1.0``, ``python3-gi``), driven by the system
Python, since ``gi`` is not in the project's virtualenv. ``scripts/test-services`` installs it.

    rtsp-server.py serve --port 8554 --clip CLIP.mp4 [--codec h264|h265] [--path /cam]
                         [--user U --password P] [--transcode]
    rtsp-server.py encode IN OUT.mp4 [--codec h264|h265] [--fps 15]

``serve`` serves the clip (an MP4 holding H.264 or H.265) over RTSP, interleaved in the TCP
connection (``protocols=tcp``), at its own frame rate, to each client from its start. With
``--user``/``--password`` the stream needs them (HTTP Basic, or Digest with ``--digest``). It
prints ``ready PORT`` once it listens, and reads commands, one per line, from its standard
input:

* ``stall`` / ``resume``: stop sending frames (the connection stays open) and go on;
* ``jump SECONDS``: shift every later frame's timestamp (the RTP timestamps jump);
* ``size W H``: change the resolution of the stream from now on (needs ``--transcode``: the
  clip is decoded, scaled and encoded again, as a camera whose settings are changed does).

``--log-frames FILE`` writes, for each frame handed to the payloader, the client's number
(from 1), the frame's number in that client's stream (from 0) and the wall clock, so that a
benchmark can tell how long a frame took from the camera to an alert.

``encode`` turns a video file OpenCV or GStreamer reads (an MJPG AVI) into an MP4 with H.264
(x264) or H.265 (x265), a key frame every second and no B-frames.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import TextIO

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstRtsp", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

ENCODERS = {
    "h264": "x264enc speed-preset=ultrafast tune=zerolatency key-int-max={gop} bframes=0"
            " ! video/x-h264,profile=constrained-baseline ! h264parse",
    "h265": "x265enc speed-preset=ultrafast tune=zerolatency key-int-max={gop}"
            " ! h265parse",
}


class Control:
    """What the commands change; read by the pad probe in the streaming thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stalled = False
        self.offset = 0  # nanoseconds added to every frame's timestamps
        self.size: tuple[int, int] | None = None
        self.medias: list[GstRtspServer.RTSPMedia] = []
        self.log: TextIO | None = None  # --log-frames: when each frame was sent


def launch_line(args: argparse.Namespace) -> str:
    codec = args.codec
    parse = f"{codec}parse"
    source = f"filesrc location={args.clip} ! qtdemux ! {parse}"
    if args.transcode:
        source += (f" ! avdec_{codec} ! videoconvert ! videoscale ! capsfilter name=size"
                   f" ! {ENCODERS[codec].format(gop=15)}")
    pay = "rtph264pay" if codec == "h264" else "rtph265pay"
    # identity sync=true paces the frames by the clip's own timestamps; the payloader sees
    # them after the probe (jump) and the valve (stall).
    return (f"( {source} ! identity name=pace sync=true single-segment=true ! valve name=valve"
            f" ! {pay} name=pay0 pt=96 )")


def on_configure(control: Control, _factory: object, media: GstRtspServer.RTSPMedia) -> None:
    bin_ = media.get_element()
    valve = bin_.get_by_name("valve")
    pace = bin_.get_by_name("pace")
    with control.lock:
        control.medias.append(media)
        number = len(control.medias)
        valve.set_property("drop", control.stalled)
        size = control.size
    sent = [0]
    if size is not None and bin_.get_by_name("size") is not None:
        set_size(bin_, size)

    def probe(_pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        with control.lock:
            offset = control.offset
            if control.log is not None:  # client (media) number, frame number, wall clock
                control.log.write(f"{number} {sent[0]} {time.time():.6f}\n")
                control.log.flush()
            sent[0] += 1
        if offset:
            buf = info.get_buffer()
            if buf.pts != Gst.CLOCK_TIME_NONE:
                buf.pts = max(buf.pts + offset, 0)
            if buf.dts != Gst.CLOCK_TIME_NONE:
                buf.dts = max(buf.dts + offset, 0)
        return Gst.PadProbeReturn.OK

    pace.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, probe)



def unsync(media: GstRtspServer.RTSPMedia) -> None:
    """The senders stop waiting for each frame's timestamp (``identity`` paces the clip), so
    that a jump of the timestamps changes what the client is told, not when it is sent."""
    pipeline = media.get_element().get_parent()
    if pipeline is None:
        return
    it = pipeline.iterate_recurse()
    while True:
        result, element = it.next()
        if result != Gst.IteratorResult.OK:
            break
        factory = element.get_factory()
        if factory is not None and factory.get_name() in ("appsink", "multiudpsink"):
            element.set_property("sync", False)


def set_size(bin_: Gst.Bin, size: tuple[int, int]) -> None:
    caps = Gst.Caps.from_string(f"video/x-raw,width={size[0]},height={size[1]}")
    bin_.get_by_name("size").set_property("caps", caps)


def command(control: Control, line: str) -> str:
    words = line.split()
    if not words:
        return ""
    with control.lock:
        medias = list(control.medias)
        if words[0] in ("stall", "resume"):
            control.stalled = words[0] == "stall"
        elif words[0] == "jump":
            control.offset += int(float(words[1]) * Gst.SECOND)
        elif words[0] == "size":
            control.size = (int(words[1]), int(words[2]))
        else:
            return f"error unknown command {words[0]}"
    for media in medias:
        element = media.get_element()
        if words[0] in ("stall", "resume"):
            element.get_by_name("valve").set_property("drop", words[0] == "stall")
        elif words[0] == "jump":
            unsync(media)
        elif words[0] == "size" and element.get_by_name("size") is not None:
            set_size(element, (int(words[1]), int(words[2])))
    return f"ok {line.strip()}"


def serve(args: argparse.Namespace) -> None:
    Gst.init(None)
    control = Control()
    if args.log_frames:
        control.log = open(args.log_frames, "w")  # noqa: SIM115 (open while serving)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args))
    factory.set_shared(False)
    factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
    factory.connect("media-configure", lambda f, m: on_configure(control, f, m))
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()  # a client that gives them is a "user"
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        if args.digest:
            auth.add_digest(args.user, args.password or "", token)
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        else:
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password or ""),
                           token)
        server.set_auth(auth)
        factory.add_role_from_structure(Gst.Structure.new_from_string(
            "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"))
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on {args.address}:{args.port}")
    loop = GLib.MainLoop()

    def read_commands() -> None:
        for line in sys.stdin:
            if line.strip() == "quit":
                break
            print(command(control, line), flush=True)
        GLib.idle_add(loop.quit)

    print(f"ready {server.get_bound_port()}", flush=True)
    threading.Thread(target=read_commands, daemon=True).start()
    loop.run()


def encode(args: argparse.Namespace) -> None:
    Gst.init(None)
    gop = max(round(args.fps), 1)
    size = f",width={args.width},height={args.height}" if args.width and args.height else ""
    pipeline = Gst.parse_launch(
        f"filesrc location={args.input} ! decodebin ! videoconvert ! videoscale"
        f" ! video/x-raw,format=I420{size}"
        f" ! {ENCODERS[args.codec].format(gop=gop)} ! mp4mux ! filesink location={args.output}")
    pipeline.set_state(Gst.State.PLAYING)
    message = pipeline.get_bus().timed_pop_filtered(
        Gst.CLOCK_TIME_NONE, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if message.type == Gst.MessageType.ERROR:
        error, _debug = message.parse_error()
        sys.exit(f"encode {args.input}: {error.message}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--clip", required=True)
    s.add_argument("--codec", choices=sorted(ENCODERS), default="h264")
    s.add_argument("--address", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8554)
    s.add_argument("--path", default="/cam")
    s.add_argument("--user")
    s.add_argument("--password")
    s.add_argument("--digest", action="store_true", help="Digest authentication, not Basic")
    s.add_argument("--transcode", action="store_true")
    s.add_argument("--log-frames", help="write 'CLIENT FRAME WALL-CLOCK' per frame sent here")
    e = sub.add_parser("encode")
    e.add_argument("input")
    e.add_argument("output")
    e.add_argument("--codec", choices=sorted(ENCODERS), default="h264")
    e.add_argument("--fps", type=float, default=15.0, help="for the key frame interval")
    e.add_argument("--width", type=int, help="scale to this size (with --height)")
    e.add_argument("--height", type=int)
    args = parser.parse_args()
    serve(args) if args.what == "serve" else encode(args)


if __name__ == "__main__":
    main()
