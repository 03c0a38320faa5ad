# Rewrite a Raspberry Pi config.txt for the gateway (used by install.sh; idempotent):
# - SPI on: an existing "dtparam=spi=off" becomes "=on", else a commented "#dtparam=spi=on" is
#   uncommented, else "dtparam=spi=on" is appended in an [all] section;
# - the kernel's at86rf233 overlay off: an active "dtoverlay=at86rf23x" line is commented out,
#   because the at86rf230 kernel driver would claim spi0.0 and leave no spidev node.
# Usage: awk -f pi-config.awk config.txt > new-config.txt
/^[ \t]*dtoverlay=at86rf23/ {
    print "# the gateway drives the AT86RF233 through spidev (deploy/install.sh):"
    print "#" $0
    next
}
/^[ \t]*dtparam=spi=off[ \t]*$/ { print "dtparam=spi=on"; spi = 1; next }
/^[ \t]*dtparam=([^#]*,)?spi(=on)?([ \t,]|$)/ { spi = 1 }
/^[ \t]*#[ \t]*dtparam=spi=on[ \t]*$/ && !spi && !uncommented {
    print "dtparam=spi=on"
    spi = 1
    uncommented = 1
    next
}
{ print }
END {
    if (!spi) {
        print ""
        print "[all]"
        print "# SPI for the gateway radio (deploy/install.sh)"
        print "dtparam=spi=on"
    }
}
