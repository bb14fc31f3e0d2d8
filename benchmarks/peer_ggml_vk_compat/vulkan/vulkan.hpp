// benchmarks/peer_ggml_vk_compat/vulkan/vulkan.hpp — put ahead of the
// system's headers by benchmarks/peer_ggml.sh --backend vulkan only. ggml's
// Vulkan backend names VK_EXT_layer_settings (Vulkan headers >= 1.3.261) to
// switch on the validation layer's best-practice checks in debug builds;
// Debian bookworm ships headers 1.3.239, which lack it. This adds the three
// declarations it uses, with the extension's own layout and sType, after the
// real header; nothing else changes. In a release build the structure is
// chained to VkInstanceCreateInfo but the layer is not enabled, and the
// loader and drivers skip extension structures they do not know (Vulkan
// spec, "Valid Usage for Structure Pointer Chains"), as they do with the real
// one. With headers that have the extension this file only forwards.
#pragma once
#include_next <vulkan/vulkan.hpp>

#ifndef VK_EXT_LAYER_SETTINGS_EXTENSION_NAME
#include <cstdint>
#include <vector>
namespace VULKAN_HPP_NAMESPACE {
enum class LayerSettingTypeEXT : int32_t {
    eBool32 = 0, eInt32 = 1, eInt64 = 2, eUint32 = 3, eUint64 = 4, eFloat32 = 5,
    eFloat64 = 6, eString = 7
};
struct LayerSettingEXT {
    const char *pLayerName;
    const char *pSettingName;
    LayerSettingTypeEXT type;
    uint32_t valueCount;
    const void *pValues;
};
struct LayerSettingsCreateInfoEXT {
    int32_t sType = 1000496000; // VK_STRUCTURE_TYPE_LAYER_SETTINGS_CREATE_INFO_EXT
    const void *pNext = nullptr;
    uint32_t settingCount = 0;
    const LayerSettingEXT *pSettings = nullptr;
    explicit LayerSettingsCreateInfoEXT(const std::vector<LayerSettingEXT> &s)
        : settingCount(static_cast<uint32_t>(s.size())), pSettings(s.data()) {}
};
} // namespace VULKAN_HPP_NAMESPACE
#endif
