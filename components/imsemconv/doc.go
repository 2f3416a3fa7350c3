// Package imsemconv holds the instant-messaging telemetry conventions that imcol's
// components share: the default attribute names on message lifecycle events, the
// lifecycle stages, and the attributes and values of the outcome records that the
// im_loss processor emits and the slo and alert_events connectors consume.
//
// Every attribute name here is a default: components let users remap it in config.
package imsemconv
