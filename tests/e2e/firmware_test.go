package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// mbr is a 512-byte boot sector that prints a line on COM1 and halts: 16-bit
// real mode, loaded by the firmware at 0x7c00.
func mbr() []byte {
	code := []byte{
		0x31, 0xC0, // xor ax,ax
		0x8E, 0xD8, // mov ds,ax
		0xFC,             // cld
		0xBA, 0xF8, 0x03, // mov dx,0x3f8
		0xBE, 0x15, 0x7C, // mov si,0x7c15 (the message)
		0xAC,       // lodsb
		0x84, 0xC0, // test al,al
		0x74, 0x03, // jz halt
		0xEE,       // out dx,al
		0xEB, 0xF8, // jmp lodsb
		0xF4,       // halt: hlt
		0xEB, 0xFD, // jmp halt
	}
	b := make([]byte, 512)
	copy(b, code)
	copy(b[0x15:], "ringfence-firmware-boot-ok\r\n\x00")
	b[510], b[511] = 0x55, 0xAA
	return b
}

// type = "hvm" without a kernel boots the first disk through the firmware.
func TestFirmwareBoot(t *testing.T) {
	e := NewEnv(t)
	disk := filepath.Join(e.Dir, "boot.img")
	img := make([]byte, 1<<20)
	copy(img, mbr())
	if err := os.WriteFile(disk, img, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(e.Dir, "hvm.cfg")
	os.WriteFile(cfg, []byte("name = 'hvm1'\ntype = 'hvm'\nmemory = 64\ndisk = [ '"+disk+",raw,hda,w' ]\n"), 0o644)
	e.names = append(e.names, "hvm1")
	e.MustRF("create", cfg)
	c := e.Console("hvm1")
	c.WaitFor("ringfence-firmware-boot-ok", 0, 60*time.Second)
	e.MustRF("destroy", "hvm1")
}
